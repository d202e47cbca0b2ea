"""wirekit's benchmark suite: wirekit against pyzmq, ncat, socat, nc, iperf3 and the
textbook ``socketserver`` approach, in one run.

Run it from the project root with ``python -m benchmarks`` (``--quick`` for a short
run, ``--only a,b`` to pick sections, ``--out DIR`` to write elsewhere). Every
measurement runs client and server as separate processes pinned with ``taskset``;
the report records which CPU placement each figure used.
"""
