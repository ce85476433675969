"""Stands in for CI's `docker push` in the demo: registers an image manifest in the emulator's ECR.

Usage: push_demo_image.py REPOSITORY TAG   (endpoint and region from AWS_ENDPOINT_URL / AWS_REGION)
"""

import hashlib
import json
import os
import sys

import boto3


def main() -> None:
    repository, tag = sys.argv[1], sys.argv[2]
    digest = lambda text: "sha256:" + hashlib.sha256(text.encode()).hexdigest()  # noqa: E731
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1, "digest": digest("config" + tag)},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 1, "digest": digest("layer" + tag)}],
    }
    ecr = boto3.client("ecr", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name=os.environ["AWS_REGION"])
    out = ecr.put_image(repositoryName=repository, imageTag=tag, imageManifest=json.dumps(manifest))
    print(f"pushed {repository}:{tag} ({out['image']['imageId']['imageDigest']})")


if __name__ == "__main__":
    main()
