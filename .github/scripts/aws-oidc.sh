#!/usr/bin/env bash
# AWS access from GitHub's OIDC token, without long-lived keys and without a third-party action:
# fetch the job's identity token for the STS audience and point the AWS SDKs and CLI at it. They
# then call AssumeRoleWithWebIdentity for ROLE_ARN themselves (and again when credentials expire).
# Needs `permissions: id-token: write` on the job.
set -euo pipefail
: "${ROLE_ARN:?set ROLE_ARN to the IAM role this job assumes}"
token_file="$RUNNER_TEMP/aws-web-identity-token"
curl --silent --show-error --fail \
    -H "Authorization: bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN" \
    "$ACTIONS_ID_TOKEN_REQUEST_URL&audience=sts.amazonaws.com" | jq -r .value >"$token_file"
chmod 600 "$token_file"
{
    echo "AWS_WEB_IDENTITY_TOKEN_FILE=$token_file"
    echo "AWS_ROLE_ARN=$ROLE_ARN"
    echo "AWS_ROLE_SESSION_NAME=github-$GITHUB_RUN_ID-$GITHUB_RUN_ATTEMPT"
} >>"$GITHUB_ENV"
