"""The team server's sign-in check: MLflow's basic auth, and only a manager steers a registered model.

MLflow's basic-auth app lets any account that may EDIT a registered model move its aliases, rename
it or delete it, and any account create one (and so MANAGE it): an editor could point `champion`
at a version of their choosing, or rename the model away and make a new one under its name, and
a reader could claim a model's name before its first run. The server's settings name this
function as MLflow's `authorization_function` (see `accounts`); MLflow calls it first for every
request, in the server. It answers 403, unless the account is an admin, to a request that moves
or drops an alias, renames or deletes a registered model, from an account that does not MANAGE
that model (as its creator does), and to one that creates a registered model from an account
that may not EDIT it (readers). Everything else is MLflow's own check, unchanged.
"""

from flask import Response, g, request
from mlflow.protos.model_registry_pb2 import (
    CreateRegisteredModel,
    DeleteRegisteredModel,
    DeleteRegisteredModelAlias,
    RenameRegisteredModel,
    SetRegisteredModelAlias,
)
from mlflow.server import auth
from mlflow.server.handlers import get_endpoints


def routes(*request_classes) -> frozenset:
    return frozenset((path, method) for path, request_class, methods in get_endpoints(lambda c: c)
                     if request_class in request_classes for method in methods)


MANAGER_ROUTES = routes(SetRegisteredModelAlias, DeleteRegisteredModelAlias, RenameRegisteredModel,
                        DeleteRegisteredModel)
CREATE_ROUTES = routes(CreateRegisteredModel)


def signed_in():
    """MLflow's answer for who signed in, or 403 for a change to a registered model the account may not make."""
    authorization = auth.authenticate_request_basic_auth()
    if isinstance(authorization, Response) or g.get("model_rule_checked"):
        return authorization
    g.model_rule_checked = True  # the checks below ask MLflow who signed in, which calls back here
    route = (request.path, request.method)
    if route in MANAGER_ROUTES or route in CREATE_ROUTES:
        allowed = auth.validate_can_manage_registered_model if route in MANAGER_ROUTES else \
            auth.validate_can_update_registered_model
        if not (auth.sender_is_admin() or allowed()):
            return auth.make_forbidden_response()
    return authorization
