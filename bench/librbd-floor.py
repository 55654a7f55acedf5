#!/usr/bin/python3
"""Floor for bench/ceph-clone.ts: librbd itself (python3-rbd), one connection, the same
clone + remove pairs at the same concurrency. Prints the wall time in ms on stdout.
usage: librbd-floor.py CONF CLIENT_ID KEYRING POOL PARENT SNAP PREFIX COUNT CONCURRENCY"""
import sys
import threading
import time

import rados
import rbd

conf, client, keyring, pool, parent, snap, prefix, count, concurrency = sys.argv[1:10]
count, concurrency = int(count), int(concurrency)
cluster = rados.Rados(conffile=conf, rados_id=client, conf={"keyring": keyring})
cluster.connect()
io = cluster.open_ioctx(pool)
lock = threading.Lock()
state = {"next": 1}


def worker():
    while True:
        with lock:
            i = state["next"]
            if i > count:
                return
            state["next"] = i + 1
        name = f"{prefix}-{i}"
        rbd.RBD().clone(io, parent, snap, io, name)
        rbd.RBD().remove(io, name)


started = time.perf_counter()
threads = [threading.Thread(target=worker) for _ in range(concurrency)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(round((time.perf_counter() - started) * 1000))
io.close()
cluster.shutdown()
