# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: Contributors to the rekey.aws project
# SPDX-License-Identifier: GPL-3.0-or-later

# Internal to rekey.aws: not a public API, may change without notice.
"""Run an IAM/STS module of rekey.aws in the controller's own process.

access_key, access_key_info, access_key_verify, rotation_lock, rotation_state and
rotation_state_info each have an action plugin of their name built on ModuleInProcess: the task's
arguments are validated against the module's own ARGUMENT_SPEC and CONSTRAINTS, as AnsibleModule
would, and handed to the module's execute() with the part of AnsibleModule it uses. Shipped to
localhost, every task and every loop item cost a Python start, the AnsiballZ payload and boto3's
import (0.5-1 s each, most of a one-host rotation's controller time); here they cost the AWS calls.
The arguments, which may hold a secret, never go to a file in a temp dir either.
"""

import contextlib
import json
import os

from ansible.module_utils.basic import missing_required_lib
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.common.parameters import remove_values
from ansible.module_utils.common.text.converters import jsonify
from ansible.module_utils.errors import UnsupportedError
from ansible.plugins.action import ActionBase

from ansible_collections.rekey.aws.plugins.module_utils import _connection

if _connection.HAS_BOTO3:
    # Imported in ansible-playbook's own process, before it forks the workers that run the tasks.
    try:
        _connection.read_service_data(("iam", "sts"))
    except Exception:  # pylint: disable=broad-exception-caught
        # Only a head start (an AWS_PROFILE naming no profile, say): the task's own client
        # reads the data, and reports what is wrong with the task's name on it.
        pass


class ModuleFailed(Exception):
    """fail_json, raised: carries the module's failed result."""

    def __init__(self, result):
        super().__init__(result["msg"])
        self.result = result


class TaskModule:
    """What a module's execute() uses of AnsibleModule."""

    def __init__(self, params, check_mode, diff):
        self.params = params
        self.check_mode = check_mode
        self._diff = diff
        self.warnings = []

    def fail_json(self, msg, **kwargs):
        raise ModuleFailed(dict(kwargs, failed=True, msg=msg))

    def warn(self, warning):
        self.warnings.append(warning)


@contextlib.contextmanager
def environment(values):
    """os.environ with the task's `environment` on top (the options' env fallbacks read it), as a
    shipped module would see it; restored after."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update({name: str(value) for name, value in values.items()})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_module(module, name, args, check_mode, diff):
    """The result `module` (a rekey.aws module's Python module) returns for `args`: validated as
    AnsibleModule validates them, serialised as exit_json serialises it, no_log values masked."""
    validation = ArgumentSpecValidator(module.ARGUMENT_SPEC, **module.CONSTRAINTS).validate(dict(args))
    no_log_values = validation._no_log_values
    try:
        error = validation.errors[0]
    except IndexError:  # the errors object is always true; it has no length
        error = None
    if error is not None:
        msg = validation.errors.msg
        if isinstance(error, UnsupportedError):
            msg = "Unsupported parameters for (%s) module: %s" % (name, msg)
        result = {"failed": True, "msg": msg}
    elif not _connection.HAS_BOTO3:
        result = {"failed": True, "msg": missing_required_lib("boto3"), "exception": _connection.BOTO3_IMPORT_ERROR}
    else:
        task_module = TaskModule(validation.validated_parameters, check_mode, diff)
        try:
            result = module.execute(task_module)
        except ModuleFailed as failure:
            result = failure.result
        if task_module.warnings:
            result["warnings"] = task_module.warnings
    result.setdefault("changed", False)
    return remove_values(json.loads(jsonify(result)), no_log_values)


class ModuleInProcess(ActionBase):
    """Subclasses set MODULE, the module's Python module."""

    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True
    MODULE = None

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        task_environment = {}
        self._compute_environment_string(task_environment)
        with environment(task_environment):
            result.update(run_module(self.MODULE, self._task.action, self._task.args, bool(self._task.check_mode),
                                     bool(self._task.diff)))
        return result
