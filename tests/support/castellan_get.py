"""Reads (or deletes) a Barbican secret the way cinder-api, cinder-volume and nova-compute do.

Run by tests/support/castellan.rs with the Python of the Cinder venv (cinder==29.0.0 and what it
pulls in: castellan, os-brick, oslo.context, keystoneauth1). The request is one JSON object on
stdin (passwords never go on the command line); the answer is one JSON object on stdout.

Operations:
* ``get``: a project-scoped token for the user (keystoneauth1 password auth), an
  ``oslo_context.context.RequestContext`` carrying that token and the project's ID, and
  castellan's key manager configured like Cinder's ``[key_manager]`` and ``[barbican]``
  (``auth_endpoint`` = Keystone, Barbican's endpoint from the catalog) calling ``.get``. On success:
  the key's bytes as hex (test secrets only) and os-brick's LUKS passphrase derived from it with
  ``os_brick.utils.get_passphrase_from_secret``, exactly what the luks encryptor feeds cryptsetup.
  With ``key_ids`` (a list) instead of ``key_id``: each key in turn with the same context, the
  answers in ``{"reads": [...]}``.
* ``fixed``: what the volume used before migration: Cinder's own ``ConfKeyManager`` with this
  ``fixed_key`` returns the all-zeros ID's key; os-brick's passphrase from it.
* ``delete``: cinder 29's ``cinder.volume.volume_utils.delete_encryption_key`` with the user's
  context as cinder-volume builds it (``cinder.context.RequestContext`` with the token and the
  catalog as keystonemiddleware passes it), and Cinder's ``[keystone_authtoken]`` service
  credentials for its fallback. Reports whether the first attempt (as the user) failed, and the
  HTTP status of every attempt that failed.

* ``clone``: cinder 29's ``cinder.volume.volume_utils.clone_encryption_key`` with the user's
  context, as cinder-api calls it when a volume is created from an encrypted image
  (``ExtractVolumeRequestTask._get_encryption_key_id``): a copy of the image's key stored in the
  user's project. The answer is the copy's ID and, read back with the same context like ``get``,
  its bytes and passphrase; the copy is then deleted again.

Failures are answered, not raised: ``{"ok": false, "error": <castellan's exception class>,
"status": <Barbican's HTTP status, if one was seen>, "cause": <the client's exception class>}``.
"""

import binascii
import json
import logging
import os
import sys
import tempfile
import time

ZERO = "00000000-0000-0000-0000-000000000000"


def http_status(exc):
    """Barbican's HTTP status behind a castellan error: castellan wraps barbicanclient's
    exception (``raise KeyManagerError(reason=e)`` inside ``except``), so it is the context."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        status = getattr(exc, "status_code", None) or getattr(exc, "http_status", None)
        if isinstance(status, int):
            return status, type(exc).__name__
        exc = exc.__cause__ or exc.__context__
    return None, None


def failure(exc):
    status, cause = http_status(exc)
    if status is None and type(exc).__name__ == "ManagedObjectNotFoundError":
        status = 404
    return {"ok": False, "error": type(exc).__name__, "status": status, "cause": cause}


def token_for(req, user, password, project):
    """A project-scoped token, as a user gets one from Keystone before calling Cinder or Nova."""
    from keystoneauth1 import session
    from keystoneauth1.identity import v3

    from keystoneauth1 import exceptions

    auth = v3.Password(
        auth_url=req["keystone"],
        username=user,
        password=password,
        user_domain_id="default",
        project_name=project,
        project_domain_id="default",
    )
    # The test Keystone keeps its data in SQLite: an authentication that meets another test's
    # write answers 500 ("database is locked"), and is asked again as a client would.
    for attempt in range(5):
        try:
            return auth.get_access(session.Session(auth=auth))
        except exceptions.InternalServerError:
            if attempt == 4:
                raise
            time.sleep(0.2 * (attempt + 1))


def cinder_conf(req, path):
    """cinder.conf's key-manager sections as an operator writes them for Barbican, plus
    ``[keystone_authtoken]`` (the service credentials delete_encryption_key falls back to)."""
    lines = [
        "[key_manager]",
        "backend = barbican",
        "",
        "[barbican]",
        "auth_endpoint = %s" % req["keystone"],
        "barbican_endpoint_type = public",
        "barbican_region_name = %s" % req.get("region", "RegionOne"),
        "",
    ]
    service = req.get("service")
    if service:
        lines += [
            "[keystone_authtoken]",
            "auth_type = password",
            "auth_url = %s" % req["keystone"],
            "username = %s" % service["user"],
            "password = %s" % service["password"].replace("$", "$$"),
            "user_domain_name = Default",
            "project_name = %s" % service["project"],
            "project_domain_name = Default",
            "",
        ]
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write("\n".join(lines))


def get(req, conf_path):
    from castellan import key_manager
    from castellan.key_manager.barbican_key_manager import BarbicanKeyManager
    from os_brick import utils as brick_utils
    from oslo_config import cfg
    from oslo_context import context as oslo_context

    access = token_for(req, req["user"], req["password"], req["project"])
    conf = cfg.ConfigOpts()
    conf(args=[], project="cinder", default_config_files=[conf_path])
    km = key_manager.API(conf)
    assert isinstance(km, BarbicanKeyManager), type(km)
    ctx = oslo_context.RequestContext(
        auth_token=access.auth_token, project_id=access.project_id, user_id=access.user_id
    )

    def one(key_id):
        try:
            key = km.get(ctx, key_id)
        except Exception as e:  # castellan's own errors, answered as data
            return failure(e)
        return {
            "ok": True,
            "hex": binascii.hexlify(key.get_encoded()).decode("ascii"),
            "passphrase": brick_utils.get_passphrase_from_secret(key),
            "managed_type": key.managed_type(),
            "user_id": access.user_id,
            "project_id": access.project_id,
        }

    # Several keys for one user: one process, one token, as one nova-compute attaching them.
    if "key_ids" in req:
        return {"reads": [one(k) for k in req["key_ids"]]}
    return one(req["key_id"])


def fixed(req):
    from cinder.keymgr import conf_key_mgr
    from os_brick import utils as brick_utils
    from oslo_config import cfg
    from oslo_context import context as oslo_context

    conf = cfg.ConfigOpts()
    conf(args=[], project="cinder", default_config_files=[])
    conf.register_opts(conf_key_mgr.key_mgr_opts, group="key_manager")
    conf.set_override("fixed_key", req["fixed_key"], group="key_manager")
    key = conf_key_mgr.ConfKeyManager(conf).get(oslo_context.RequestContext(), ZERO)
    return {
        "ok": True,
        "hex": binascii.hexlify(key.get_encoded()).decode("ascii"),
        "passphrase": brick_utils.get_passphrase_from_secret(key),
        "managed_type": key.managed_type(),
    }


class Remember(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages = []
        self.statuses = []

    def emit(self, record):
        self.messages.append(record.getMessage())
        # castellan logs barbicanclient's exception ("Error deleting object: %s") before it
        # wraps it: the HTTP status each attempt got.
        for arg in record.args if isinstance(record.args, tuple) else ():
            status, _ = http_status(arg) if isinstance(arg, BaseException) else (None, None)
            if status is not None:
                self.statuses.append(status)


def delete(req, conf_path):
    from castellan import key_manager
    from cinder import context as cinder_context
    from cinder.volume import volume_utils
    from keystonemiddleware.auth_token import _request as ksm_request

    cinder_conf_opts = volume_utils.CONF
    cinder_conf_opts(args=[], project="cinder", default_config_files=[conf_path])
    access = token_for(req, req["user"], req["password"], req["project"])
    # cinder-api receives the catalog in X-Service-Catalog, which keystonemiddleware fills in
    # this (v2-shaped) form; cinder's context turns it into the auth plugin castellan uses.
    catalog = ksm_request._normalize_catalog(access.service_catalog.catalog)
    ctx = cinder_context.RequestContext(
        user_id=access.user_id,
        project_id=access.project_id,
        auth_token=access.auth_token,
        service_catalog=catalog,
        is_admin=False,
    )
    remember = Remember()
    logging.getLogger("cinder.volume.volume_utils").addHandler(remember)
    logging.getLogger("cinder.volume.volume_utils").setLevel(logging.DEBUG)
    logging.getLogger("castellan.key_manager.barbican_key_manager").addHandler(remember)
    km = key_manager.API(cinder_conf_opts)
    try:
        volume_utils.delete_encryption_key(ctx, km, req["key_id"])
    except Exception as e:
        answer = failure(e)
    else:
        answer = {"ok": True}
    answer["first_attempt_failed"] = any("First attempt to delete key id" in m for m in remember.messages)
    answer["failed_statuses"] = remember.statuses
    return answer


def cinder_context_for(req):
    from cinder import context as cinder_context
    from keystonemiddleware.auth_token import _request as ksm_request

    access = token_for(req, req["user"], req["password"], req["project"])
    catalog = ksm_request._normalize_catalog(access.service_catalog.catalog)
    return access, cinder_context.RequestContext(
        user_id=access.user_id,
        project_id=access.project_id,
        auth_token=access.auth_token,
        service_catalog=catalog,
        is_admin=False,
    )


def clone(req, conf_path):
    from castellan import key_manager
    from cinder.volume import volume_utils
    from os_brick import utils as brick_utils

    cinder_conf_opts = volume_utils.CONF
    cinder_conf_opts(args=[], project="cinder", default_config_files=[conf_path])
    access, ctx = cinder_context_for(req)
    km = key_manager.API(cinder_conf_opts)
    try:
        new_id = volume_utils.clone_encryption_key(ctx, km, req["key_id"])
        key = km.get(ctx, new_id)
    except Exception as e:
        return failure(e)
    answer = {
        "ok": True,
        "new_key_id": new_id,
        "hex": binascii.hexlify(key.get_encoded()).decode("ascii"),
        "passphrase": brick_utils.get_passphrase_from_secret(key),
        "managed_type": key.managed_type(),
        "user_id": access.user_id,
        "project_id": access.project_id,
    }
    try:
        km.delete(ctx, new_id)
        answer["clone_deleted"] = True
    except Exception:
        answer["clone_deleted"] = False
    return answer


def main():
    req = json.load(sys.stdin)
    with tempfile.TemporaryDirectory() as d:
        conf_path = os.path.join(d, "cinder.conf")
        cinder_conf(req, conf_path)
        op = req["op"]
        if op == "get":
            answer = get(req, conf_path)
        elif op == "fixed":
            answer = fixed(req)
        elif op == "delete":
            answer = delete(req, conf_path)
        elif op == "clone":
            answer = clone(req, conf_path)
        else:
            raise SystemExit("unknown op %r" % op)
    json.dump(answer, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
