"""The local cluster's AWS side in moto, as EKS users have it (run by
e2e/cluster up with moto's own Python, which has boto3): a VPC with one
subnet per zone and a security group, tagged spotwright.io/discovery=<cluster>,
and, for every Kubernetes minor the local cluster knows, the EKS-optimized
AMI parameters under a writable prefix (moto refuses /aws/...), a distinct
image per minor and architecture, so that an upgrade changes the image;
and the cluster itself in EKS, so that DescribeCluster answers with its
version ($EKS_VERSION) and service CIDR ($EKS_SERVICE_CIDR), as on AWS
(moto makes up the endpoint and CA, which KWOK's nodes never use).
Idempotent: the network is found by tag, the images are chosen the same way
each time, the EKS cluster is made once (again when its version is not current).
Usage: cluster-aws.py <cluster> <ssm-prefix> <minor>..."""
import os
import sys

import boto3

cluster, prefix, minors = sys.argv[1], sys.argv[2], sys.argv[3:]
ec2 = boto3.client("ec2")
tag = {"Key": "spotwright.io/discovery", "Value": cluster}
tagged = [{"Name": "tag:spotwright.io/discovery", "Values": [cluster]}]
zones = ["us-east-1a", "us-east-1b", "us-east-1c"]


def spec(kind, name):
    return [{"ResourceType": kind, "Tags": [tag, {"Key": "Name", "Value": name}]}]


if len(ec2.describe_subnets(Filters=tagged)["Subnets"]) < len(zones):
    vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16", TagSpecifications=spec("vpc", f"{cluster}"))["Vpc"]["VpcId"]
    for i, zone in enumerate(zones):
        ec2.create_subnet(VpcId=vpc, AvailabilityZone=zone, CidrBlock=f"10.42.{i}.0/24",
                          TagSpecifications=spec("subnet", f"{cluster}-{zone}"))
    ec2.create_security_group(GroupName=f"{cluster}-nodes", Description="Spotwright nodes", VpcId=vpc,
                              TagSpecifications=spec("security-group", f"{cluster}-nodes"))

ssm = boto3.client("ssm")
for arch in ["x86_64", "arm64"]:
    images = sorted(i["ImageId"] for i in ec2.describe_images()["Images"] if i.get("Architecture") == arch)
    if len(images) < len(minors):
        if arch == "x86_64":
            sys.exit(f"moto lists {len(images)} x86_64 AMIs, fewer than the {len(minors)} versions")
        continue
    for minor, image in zip(minors, images):
        path = f"{prefix}/{minor}/amazon-linux-2023/{arch}/standard/recommended/image_id"
        ssm.put_parameter(Name=path, Value=image, Type="String", Overwrite=True)
        print(f"{path} = {image}")

eks = boto3.client("eks")
version, service_cidr = os.environ["EKS_VERSION"], os.environ["EKS_SERVICE_CIDR"]
# moto has no UpdateClusterVersion: a cluster at another version is made anew.
if cluster in eks.list_clusters()["clusters"] and eks.describe_cluster(name=cluster)["cluster"]["version"] != version:
    eks.delete_cluster(name=cluster)
if cluster not in eks.list_clusters()["clusters"]:
    subnets = [s["SubnetId"] for s in ec2.describe_subnets(Filters=tagged)["Subnets"]]
    groups = [g["GroupId"] for g in ec2.describe_security_groups(Filters=tagged)["SecurityGroups"]]
    eks.create_cluster(
        name=cluster,
        version=version,
        roleArn="arn:aws:iam::123456789012:role/" + cluster + "-cluster",
        resourcesVpcConfig={"subnetIds": subnets, "securityGroupIds": groups},
        kubernetesNetworkConfig={"serviceIpv4Cidr": service_cidr, "ipFamily": "ipv4"},
    )
described = eks.describe_cluster(name=cluster)["cluster"]
print(f"EKS cluster {cluster}: {described['version']}, {described['endpoint']}, "
      f"{described['kubernetesNetworkConfig']}")
