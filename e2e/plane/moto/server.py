"""moto's server (run by e2e/cluster up with moto's own Python), answering
EC2's catalogue reads from memory after the first time.

DescribeInstanceTypes, DescribeInstanceTypeOfferings and
DescribeSpotPriceHistory answer from data moto ships with, the same for the
same question while the server runs. moto builds the first answer in 3-6 s
on this machine (5.8 MB of XML for 1,395 types; EC2 answers in about one),
and every provisioner the suite starts asks all three, one after another on
moto's one interpreter. The first answer to each question is kept and sent
again: the bytes are moto's own. A question differs by its parameters (the
time window of a price history aside: moto's prices have none), its region
and its account; an error is never kept. Any other action is moto's, as is.
Usage: server.py <moto_server arguments>"""
import sys

from moto.core import responses
from moto.server import main

STATIC_EC2_READS = frozenset(
    {"DescribeInstanceTypes", "DescribeInstanceTypeOfferings", "DescribeSpotPriceHistory"}
)
# Parameters that do not change moto's answer to a static read.
IGNORED = frozenset({"StartTime", "EndTime"})

moto_call_action = responses.BaseResponse.call_action
answers = {}


def question(response):
    """The key of a static EC2 read, or None for anything else."""
    if response.service_name != "ec2":
        return None
    action = response._get_action()
    if action not in STATIC_EC2_READS:
        return None
    params = tuple(
        sorted(
            (name, tuple(values))
            for name, values in response.querystring.items()
            if name not in IGNORED
        )
    )
    return (response.region, response.current_account, action, params)


def call_action(self):
    try:
        key = question(self)
    except Exception:  # moto's internals moved: answer as moto does
        key = None
    if key is None:
        return moto_call_action(self)
    kept = answers.get(key)
    if kept is None:
        status, headers, body = moto_call_action(self)
        if status != 200:
            return status, headers, body
        kept = answers[key] = (status, dict(headers), body)
    status, headers, body = kept
    return status, dict(headers), body


responses.BaseResponse.call_action = call_action

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
