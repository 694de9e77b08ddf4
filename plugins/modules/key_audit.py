# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: Contributors to the rekey.aws project
# SPDX-License-Identifier: GPL-3.0-or-later

# The work is done on the controller by the action plugin of the same name
# (plugins/action/key_audit.py): it decides, and calls no AWS API.

DOCUMENTATION = r"""
module: key_audit
short_description: Say what to do about each access key, and which consumers and hosts hold it
version_added: 0.2.0
description:
  - Used by the playbook C(rekey.aws.audit), on the controller. Calls no AWS API and writes nothing.
  - Takes the keys M(rekey.aws.access_key_info) read and returns each with C(consumers) and
    C(held_by) (for an Active key, the consumers among O(hosts)' C(rotate_consumers) that name its
    user, and their hosts; an Inactive key authenticates nothing, so none), and C(findings).
  - "The findings: C(due) (Active and at least O(max_age_days) old); C(never_used); C(unused) (last
    used at least O(unused_days) ago); C(two_active_keys) (its user has two Active keys);
    C(no_consumer) (no consumer in the inventory names its user); C(instance_role) (an Active key
    held on a host that is an EC2 instance, which could use an instance role instead)."
  - A host is an EC2 instance when its host variable C(audit_ec2_instance) says so, else when what
    M(rekey.aws.host_dmi_info) read on it (registered as O(dmi_var)) names EC2. A host it could not
    read is neither (C(ec2) V(null)). A C(audit_ec2_instance) that is not a boolean fails the task,
    naming the host.
author:
  - rekey.aws contributors (@rekey)
extends_documentation_fragment:
  - rekey.aws._attributes
  - rekey.aws._attributes.INFO_MODULE
options:
  keys:
    description: The C(access_keys) M(rekey.aws.access_key_info) returned.
    type: list
    elements: dict
    required: true
  hosts:
    description: The hosts whose consumers are read.
    type: list
    elements: str
    default: []
  max_age_days:
    description: An Active key this many days old is due.
    type: int
    default: 90
  unused_days:
    description: A key last used this many days ago or more is unused.
    type: int
    default: 45
  dmi_var:
    description: The host variable holding the registered result of M(rekey.aws.host_dmi_info).
    type: str
    default: _audit_dmi
seealso:
  - module: rekey.aws.host_dmi_info
  - module: rekey.aws.access_key_info
"""

EXAMPLES = r"""
- name: Read what each consumer host says about its machine
  rekey.aws.host_dmi_info:
  register: _audit_dmi
  # on the consumer hosts, in a play before this one

- name: Build the audit
  rekey.aws.key_audit:
    keys: "{{ read.access_keys }}"
    hosts: "{{ query('ansible.builtin.inventory_hostnames', 'all') }}"
    max_age_days: 90
    unused_days: 45
  register: audit
"""

RETURN = r"""
audit:
  description:
    - The report (no secret in it).
    - C(generated_at), C(max_age_days), C(unused_days).
    - C(access_keys), each key as M(rekey.aws.access_key_info) returns it with C(due), C(consumers)
      (each C(host), C(name), C(path), C(format)), C(held_by) (their hosts) and C(findings) (each
      C(finding) and C(message)).
    - C(hosts), each host holding a consumer with C(ec2) (V(true), V(false) or V(null) for unknown)
      and C(source) (what said so).
    - C(findings), per finding the key ids it concerns (the users for C(two_active_keys)), and
      C(ec2_hosts) and C(ec2_unknown_hosts).
  returned: always
  type: dict
lines:
  description:
    - One line per key (user, id, status, age, last use, DUE, the consumers holding it), each
      finding but C(due) on a line of its own below it, or C(no access keys).
    - Then how many keys each finding concerns, the EC2 hosts, and the hosts whose platform is unknown.
  returned: always
  type: list
  elements: str
"""
