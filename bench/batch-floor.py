#!/usr/bin/python3
"""Floor for bench/batch-realistic-hil.ts: per node, what provisioning has to do and nothing
else, at the SDK's concurrency: a librbd clone on one connection (python3-rbd), the SDK's own
tgtadm command lines, the same boot files, and the same HIL requests (the SDK's GETs, then
connect_network and polls of its networking action until DONE). Prints the wall time in ms.
usage: batch-floor.py PLAN.json up|down
The plan (written by the benchmark) holds the Ceph client, the templates and the nodes; in the
templates {RBD}, {TID}, {NODE} and {MAC} stand for the node's own values."""
import base64
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request

import rados
import rbd

plan = json.load(open(sys.argv[1]))
what = sys.argv[2]
ceph, hil = plan["ceph"], plan["hil"]
cluster = rados.Rados(conffile=ceph["conf"], rados_id=ceph["clientId"], conf={"keyring": ceph["keyring"]})
cluster.connect()
io = cluster.open_ioctx(ceph["pool"])
auth = "Basic " + base64.b64encode(f"{hil['user']}:{hil['password']}".encode()).decode()


def fill(text, node):
    for key in ("RBD", "TID", "NODE", "MAC"):
        text = text.replace("{" + key + "}", str(node[key.lower()]))
    return text


def request(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(hil["url"] + path, data=data, method=method)
    req.add_header("Authorization", auth)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=600) as answer:
        text = answer.read()
        return json.loads(text) if text else None


def network_action(node, verb, body):
    answer = request("POST", f"/v0/node/{node['node']}/nic/{hil['nic']}/{verb}", body)
    delay = hil["pollMs"] / 1000
    while request("GET", f"/v0/networking_action/{answer['status_id']}")["status"] != "DONE":
        time.sleep(delay)


def tgtadm(node, lines):
    for args in lines:
        subprocess.run([fill(a, node) for a in args], check=True, stdout=subprocess.DEVNULL)


def up(node):
    rbd.RBD().clone(io, ceph["parent"], ceph["snapshot"], io, node["rbd"])
    tgtadm(node, plan["tgtadmUp"])
    for f in plan["files"]:
        path = os.path.join(plan["tftpRoot"], fill(f["rel"], node))
        with open(path + ".tmp", "w") as out:
            out.write(fill(f["text"], node))
        os.chmod(path + ".tmp", f["mode"])
        os.rename(path + ".tmp", path)
    if hil["enabled"]:
        for path in hil["gets"]:
            request("GET", fill(path, node))
        network_action(node, "connect_network", {"network": hil["network"]})


def down(node):
    if hil["enabled"]:
        network_action(node, "detach_network", {"network": hil["network"]})
    for f in plan["files"]:
        os.remove(os.path.join(plan["tftpRoot"], fill(f["rel"], node)))
    tgtadm(node, plan["tgtadmDown"])
    rbd.RBD().remove(io, node["rbd"])


lock = threading.Lock()
queue = list(plan["nodes"])
errors = []


def worker():
    while True:
        with lock:
            if not queue or errors:
                return
            node = queue.pop(0)
        try:
            (up if what == "up" else down)(node)
        except Exception as error:  # the benchmark reports it and stops
            errors.append(f"{node['node']}: {error!r}")


started = time.perf_counter()
threads = [threading.Thread(target=worker) for _ in range(plan["concurrency"])]
for t in threads:
    t.start()
for t in threads:
    t.join()
io.close()
cluster.shutdown()
if errors:
    sys.exit("floor failed: " + "; ".join(errors))
print(round((time.perf_counter() - started) * 1000))
