"""The team server's sign-in check: MLflow's basic auth, and MANAGE to move or drop a model's alias.

MLflow's basic-auth app lets any account that may EDIT a registered model move its aliases, so
any editor could point `champion` at a version of their choosing. The server's settings name
this function as MLflow's `authorization_function` (see `accounts`); MLflow calls it first for
every request, in the server, so a request that sets or deletes an alias is answered 403 there
unless its account is an admin or MANAGEs the registered model (as its creator does). Everything
else is MLflow's own check, unchanged.
"""

from flask import Response, g, request
from mlflow.protos.model_registry_pb2 import DeleteRegisteredModelAlias, SetRegisteredModelAlias
from mlflow.server import auth
from mlflow.server.handlers import get_endpoints

ALIAS_ROUTES = frozenset((path, method) for path, request_class, methods in get_endpoints(lambda c: c)
                         if request_class in (SetRegisteredModelAlias, DeleteRegisteredModelAlias)
                         for method in methods)


def signed_in():
    """MLflow's answer for who signed in, or 403 for an alias change the account may not make."""
    authorization = auth.authenticate_request_basic_auth()
    if isinstance(authorization, Response) or g.get("alias_rule_checked"):
        return authorization
    g.alias_rule_checked = True  # the checks below ask MLflow who signed in, which calls back here
    if ((request.path, request.method) in ALIAS_ROUTES
            and not (auth.sender_is_admin() or auth.validate_can_manage_registered_model())):
        return auth.make_forbidden_response()
    return authorization
