# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: Contributors to the rekey.aws project
# SPDX-License-Identifier: GPL-3.0-or-later

# Internal to rekey.aws: not a public API, may change without notice.


class ModuleDocFragment:

    DOCUMENTATION = r"""
options:
  access_key:
    description:
      - The access key ID of the credentials the module calls AWS with.
      - If not set, the E(AWS_ACCESS_KEY_ID) environment variable is used.
      - When no credentials are given at all, boto3's default credential chain is used
        (shared credentials and config files, container and instance roles).
    type: str
    aliases: [aws_access_key_id, aws_access_key]
  secret_key:
    description:
      - The secret access key that goes with O(access_key).
      - If not set, the E(AWS_SECRET_ACCESS_KEY) environment variable is used.
    type: str
    aliases: [aws_secret_access_key, aws_secret_key]
  session_token:
    description:
      - The session token of temporary credentials.
      - If not set, the E(AWS_SESSION_TOKEN) environment variable is used.
    type: str
    aliases: [aws_session_token]
  profile:
    description:
      - A named profile of the AWS shared credentials and config files.
      - If not set, the E(AWS_PROFILE) environment variable is used.
      - When set, credentials from the E(AWS_ACCESS_KEY_ID) and E(AWS_SECRET_ACCESS_KEY) environment
        variables are ignored; setting both O(profile) and O(access_key) on the task is an error.
    type: str
    aliases: [aws_profile]
  retries:
    description:
      - How many times a failed AWS call is retried after the first attempt (botocore's
        C(max_attempts) in its C(standard) retry mode, which backs off exponentially and retries
        throttling, HTTP 5xx answers and connection errors). V(0) turns retries off.
    type: int
    default: 10
  region:
    description:
      - The AWS region to send requests to. IAM is global, but the region selects the partition
        and the STS endpoint.
      - If not set, the E(AWS_REGION) or E(AWS_DEFAULT_REGION) environment variable is used.
    type: str
    default: us-east-1
    aliases: [aws_region]
  endpoint_url:
    description:
      - Send requests to this URL instead of the AWS endpoint, for example a VPC endpoint or a
        local test endpoint.
      - If not set, the E(AWS_ENDPOINT_URL) environment variable is used.
    type: str
    aliases: [aws_endpoint_url]
  validate_certs:
    description:
      - Verify the TLS certificate of the endpoint.
      - Only set to V(false) against a test endpoint you control.
    type: bool
    default: true
"""
