"""Tables for ./run walkthrough, from `kubectl get -o json` output and moto
(run with moto's own Python, which has boto3; the cluster's AWS exports set).

  report.py nodes NODES.json CLAIMS.json     name, kubelet, image, capacity type, zone
  report.py launches CLAIMS.json             per NodeClaim: the types offered, the type picked
  report.py instances-left CLUSTER           Spotwright instances still pending or running
"""
import json
import sys

import boto3


def load(path):
    with open(path) as f:
        return json.load(f)["items"]


def instance_images(ids):
    if not ids:
        return {}
    out = boto3.client("ec2").describe_instances(InstanceIds=sorted(ids))
    return {i["InstanceId"]: i.get("ImageId", "-") for r in out["Reservations"] for i in r["Instances"]}


def nodes(nodes_path, claims_path):
    claims = {c.get("status", {}).get("nodeName"): c for c in load(claims_path)}
    rows, ids = [], {}
    for node in load(nodes_path):
        labels = node["metadata"].get("labels", {})
        name = node["metadata"]["name"]
        provider = node.get("spec", {}).get("providerID", "")
        instance = provider.rsplit("/", 1)[-1]
        claim = claims.get(name)
        image = (claim or {}).get("status", {}).get("imageID")
        if image is None and instance.startswith("i-"):
            ids[name] = instance
        capacity = labels.get("spotwright.io/capacity-type") or labels.get("eks.amazonaws.com/capacityType", "-")
        group = "system" if "eks.amazonaws.com/nodegroup" in labels else labels.get("spotwright.io/nodepool", "-")
        rows.append([name, group, node.get("status", {}).get("nodeInfo", {}).get("kubeletVersion", "-"),
                     image, capacity, labels.get("topology.kubernetes.io/zone", "-")])
    images = instance_images(set(ids.values()))
    for row in rows:
        if row[3] is None:
            row[3] = images.get(ids.get(row[0]), "-")
    table(["node", "pool", "kubelet", "image", "capacity", "zone"], sorted(rows, key=lambda r: (r[1], r[0])))


def launches(claims_path):
    rows = []
    for claim in sorted(load(claims_path), key=lambda c: c["metadata"]["creationTimestamp"]):
        offered = []
        for req in claim["spec"].get("requirements", []):
            if req["key"] == "node.kubernetes.io/instance-type" and req["operator"] == "In":
                offered = req.get("values", [])
        status = claim.get("status", {})
        shown = ", ".join(offered[:8]) + (f", … ({len(offered)} in all)" if len(offered) > 8 else "")
        rows.append([claim["metadata"]["name"], str(len(offered)), shown,
                     status.get("instanceType", "-"), status.get("zone", "-"), status.get("capacityType", "-")])
    table(["NodeClaim", "types offered", "offered", "AWS picked", "zone", "capacity"], rows)


def instances_left(cluster):
    out = boto3.client("ec2").describe_instances(Filters=[
        {"Name": "tag-key", "Values": ["spotwright.io/nodeclaim"]},
        {"Name": f"tag:kubernetes.io/cluster/{cluster}", "Values": ["owned"]},
        {"Name": "instance-state-name", "Values": ["pending", "running"]},
    ])
    print(sum(len(r["Instances"]) for r in out["Reservations"]))


def table(header, rows):
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    {"nodes": nodes, "launches": launches, "instances-left": instances_left}[command](*args)
