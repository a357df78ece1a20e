"""The demo's AWS side in moto (run by ./run with moto's own Python, which
has boto3): a VPC with one subnet per zone and a security group, tagged
spotwright.io/discovery=<cluster>, and the EKS AMI parameter for the
cluster's Kubernetes minor under a writable prefix (moto refuses /aws/...).
Idempotent: found by tag. Usage: demo-network.py <cluster> <minor> <ssm-prefix>"""
import sys

import boto3

cluster, minor, prefix = sys.argv[1:4]
ec2 = boto3.client("ec2")
tag = {"Key": "spotwright.io/discovery", "Value": cluster}
tagged = [{"Name": "tag:spotwright.io/discovery", "Values": [cluster]}]
zones = ["us-east-1a", "us-east-1b", "us-east-1c"]


def spec(kind, name):
    return [{"ResourceType": kind, "Tags": [tag, {"Key": "Name", "Value": name}]}]


if len(ec2.describe_subnets(Filters=tagged)["Subnets"]) < len(zones):
    vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16", TagSpecifications=spec("vpc", "spotwright-demo"))["Vpc"]["VpcId"]
    for i, zone in enumerate(zones):
        ec2.create_subnet(VpcId=vpc, AvailabilityZone=zone, CidrBlock=f"10.42.{i}.0/24",
                          TagSpecifications=spec("subnet", f"spotwright-demo-{zone}"))
    ec2.create_security_group(GroupName="spotwright-demo-nodes", Description="Spotwright demo nodes", VpcId=vpc,
                              TagSpecifications=spec("security-group", "spotwright-demo-nodes"))
images = [i for i in ec2.describe_images()["Images"] if i.get("Architecture") == "x86_64"]
if not images:
    sys.exit("moto lists no x86_64 AMI")
path = f"{prefix}/{minor}/amazon-linux-2023/x86_64/standard/recommended/image_id"
boto3.client("ssm").put_parameter(Name=path, Value=images[0]["ImageId"], Type="String", Overwrite=True)
print(path)
