#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: Contributors to the rekey.aws project
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r"""
module: host_dmi_info
short_description: Read what a host says about the machine it runs on (DMI, Xen UUID)
version_added: 0.2.0
description:
  - Reads, on the host, the DMI values the kernel exposes under C(/sys/class/dmi/id)
    (C(sys_vendor), C(product_name), C(board_asset_tag), C(product_uuid)) and the Xen hypervisor's
    C(/sys/hypervisor/uuid), so that the audit (playbook C(rekey.aws.audit)) can tell an EC2
    instance. Nitro instances name C(Amazon EC2) as vendor and their instance id as asset tag, Xen
    ones have a UUID starting with C(ec2).
  - Decides nothing, M(rekey.aws.key_audit) reads the values. A value is V(null) when its file is
    missing (no DMI in a container or network namespace without C(/sys/class/dmi)) or unreadable
    (C(product_uuid) is readable by root only); RV(errors) says why.
  - Uses the Python standard library only, so targets need no boto3, and makes no network call (no
    instance metadata service).
author:
  - rekey.aws contributors (@rekey)
extends_documentation_fragment:
  - rekey.aws._attributes
  - rekey.aws._attributes.INFO_MODULE
options: {}
"""

EXAMPLES = r"""
- name: Read what the host says about its machine
  rekey.aws.host_dmi_info:
  register: dmi
"""

RETURN = r"""
readings:
  description: Each value, stripped, or V(null) when it could not be read.
  returned: always
  type: dict
  contains:
    sys_vendor:
      description: C(/sys/class/dmi/id/sys_vendor).
      type: str
      sample: Amazon EC2
    product_name:
      description: C(/sys/class/dmi/id/product_name).
      type: str
      sample: m6i.large
    board_asset_tag:
      description: C(/sys/class/dmi/id/board_asset_tag).
      type: str
      sample: i-0123456789abcdef0
    product_uuid:
      description: C(/sys/class/dmi/id/product_uuid) (root only).
      type: str
      sample: ec2e1916-9099-7caf-fd21-012345abcdef
    hypervisor_uuid:
      description: C(/sys/hypervisor/uuid) (Xen guests).
      type: str
      sample: ec2e1916-9099-7caf-fd21-012345abcdef
errors:
  description: For each value that could not be read, why (C(missing) or the error).
  returned: always
  type: dict
  sample: {"product_uuid": "missing", "hypervisor_uuid": "missing"}
"""

from ansible.module_utils.basic import AnsibleModule

SOURCES = (
    ("sys_vendor", "/sys/class/dmi/id/sys_vendor"),
    ("product_name", "/sys/class/dmi/id/product_name"),
    ("board_asset_tag", "/sys/class/dmi/id/board_asset_tag"),
    ("product_uuid", "/sys/class/dmi/id/product_uuid"),
    ("hypervisor_uuid", "/sys/hypervisor/uuid"),
)
_MAX_BYTES = 256


def read(path):
    """(value, None) or (None, why)."""
    try:
        with open(path, "rb") as f:
            return f.read(_MAX_BYTES).decode("utf-8", "replace").strip(), None
    except FileNotFoundError:
        return None, "missing"
    except OSError as e:
        return None, e.strerror or str(e)


def main():
    module = AnsibleModule(argument_spec={}, supports_check_mode=True)
    readings, errors = {}, {}
    for field, path in SOURCES:
        readings[field], why = read(path)
        if why:
            errors[field] = why
    module.exit_json(changed=False, readings=readings, errors=errors)


if __name__ == "__main__":
    main()
