"""Small HTTP endpoints every deployment needs: liveness and browser tickets."""

from starlette.requests import Request
from starlette.responses import JSONResponse

from gateway.auth import Authenticator


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def issue_ticket(request: Request) -> JSONResponse:
    auth: Authenticator = request.app.state.auth
    principal = auth.authenticate(request)
    if principal is None:
        return JSONResponse({"code": "unauthorized", "title": "unauthorized"}, status_code=401)
    ticket, expires = auth.issue_ticket(principal)
    return JSONResponse({"ticket": ticket, "expires_at": expires * 1000})
