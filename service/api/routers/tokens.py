"""Routes for API tokens (all ``admin``): issue, list, revoke."""

from __future__ import annotations

from fastapi import APIRouter

from service import tokens
from service.api.deps import AdminToken, IdPath, SessionDep
from service.api.routing import UnitOfWorkRoute
from service.api.schemas.tokens import IssuedTokenOut, TokenCreate, TokenOut

router = APIRouter(prefix="/v1/tokens", tags=["tokens"], route_class=UnitOfWorkRoute)


@router.post("", status_code=201, summary="Issue a token; its secret is shown only here")
def issue_token(body: TokenCreate, session: SessionDep, _: AdminToken) -> IssuedTokenOut:
    row, secret = tokens.issue_token(session, scope=body.scope, name=body.name)
    return IssuedTokenOut(**TokenOut.of(row).model_dump(), token=secret)


@router.get("", summary="Every token (never the secrets)")
def list_tokens(session: SessionDep, _: AdminToken) -> list[TokenOut]:
    return [TokenOut.of(row) for row in tokens.list_tokens(session)]


@router.delete("/{token_id}", summary="Revoke a token")
def revoke_token(token_id: IdPath, session: SessionDep, _: AdminToken) -> TokenOut:
    return TokenOut.of(tokens.revoke_token(session, token_id))
