"""What every worker needs, imported once by the worker pool's fork server.

Workers are forked from that server after this module ran, so a worker's first
invocation is as warm as its later ones: scikit-learn and groveflow's stages are
imported, and botocore's S3 service model is loaded (by a throwaway client; the next S3
client of the default session is built in milliseconds instead of 0.15 s, and still
reads its region, endpoint and credentials from the worker's environment).
"""

from __future__ import annotations

import boto3

import groveflow.training  # noqa: F401  (scikit-learn with it)

boto3.client(
    "s3",
    region_name="us-east-1",
    endpoint_url="http://127.0.0.1:9",  # never called
    aws_access_key_id="warm-start",
    aws_secret_access_key="warm-start",
)
