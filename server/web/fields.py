"""Request fields that pages and the JSON API share: each kind of field, and how long it may be, named once."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import Form, Query
from pydantic import BaseModel, Field

# A form's fields (an over-long value is refused 422 before the route runs).
Password = Annotated[str, Form(max_length=1024)]  # any password: sign-in, change, step-up, a new user's
Code = Annotated[str, Form(max_length=64)]  # a code from the authenticator app, or a recovery code
Name = Annotated[str, Form(max_length=64)]  # a user's or a channel's name
Link = Annotated[str, Form(max_length=2000)]  # a URL, or the same-site path a form goes on to (`next`)
Flag = Annotated[str, Form(max_length=8)]  # a checkbox: ticked when not empty
LoginText = Annotated[str, Form(max_length=200)]  # the sign-in form's user name and form token

# A query's fields.
RowId = Annotated[int | None, Query(ge=1)]  # a row's id to filter or page by (`?device=`, `?before=`), or none
SEARCH_MAX = 200  # characters of a search; longer text is cut, not refused


class ListQuery(BaseModel):
    """A searched list, a page at a time (`?q=&page=`); a page's own filters are the fields of a subclass."""

    q: str = ""
    page: int = Field(default=1, ge=1, le=100_000)

    @property
    def search(self) -> str:
        """The search as used: a too-long one is cut (and the page can say so), never an error page."""
        return self.q[:SEARCH_MAX]

    @property
    def cut(self) -> bool:
        return len(self.q) > SEARCH_MAX

    def link(self, path: str, page: int) -> str:
        """This list at another page: the search and the filters that are set, in field order, then the page."""
        fields = self.model_dump(exclude={"page"}) | {"q": self.search}
        kept = {name: value for name, value in fields.items() if value}
        return f"{path}?{urlencode({**kept, 'page': page})}"
