"""API tokens as the command line lists and revokes them (creation and lookup live in store.accounts)."""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import Connection, select, update

from server.store.schema import api_tokens, users


class TokenRow(NamedTuple):
    """One token as listed: never its secret."""

    id: int
    user: str
    name: str
    revoked: bool


def list_tokens(conn: Connection) -> list[TokenRow]:
    """Every token with its owner's name, oldest first."""
    query = select(api_tokens.c.id, users.c.name.label("user"), api_tokens.c.name, api_tokens.c.revoked).join(
        users, users.c.id == api_tokens.c.user_id
    )
    return [TokenRow(int(r.id), str(r.user), str(r.name), bool(r.revoked)) for r in conn.execute(query.order_by(api_tokens.c.id))]


def revoke(conn: Connection, token_id: int) -> bool:
    """Revoke a token; False when there is no such token."""
    return bool(conn.execute(update(api_tokens).where(api_tokens.c.id == token_id).values(revoked=True)).rowcount)
