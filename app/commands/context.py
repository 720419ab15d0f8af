"""What every ``benchdata`` command of one invocation shares: the service, opened lazily,
and the ownership options (``--experiment EXP42`` ...)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Optional

import click

from app.core.ids import OWNERSHIP_KINDS

if TYPE_CHECKING:
    from app.service import BenchService

#: Ownership kinds offered as options (``--experiment EXP42``); names or ULIDs.
CLI_KINDS = tuple(kind for kind in OWNERSHIP_KINDS if kind != "manager")


def ownership_options(func: Callable[..., Any]) -> Callable[..., Any]:
    for kind in reversed(CLI_KINDS):
        func = click.option(f"--{kind}", f"{kind}_name", metavar="NAME",
                            help=f"{kind.capitalize()} name (or ULID).")(func)
    return func


def ownership_from_options(service: BenchService, names: dict[str, Optional[str]]) -> Any:
    return service.ownership(**{key[:-5]: value for key, value in names.items() if value})


class Context:
    """Lazily opened service shared by the commands of one invocation."""

    def __init__(self, data_dir: Optional[str]) -> None:
        self.data_dir = data_dir
        self._service: Optional[BenchService] = None

    @property
    def service(self) -> BenchService:
        if self._service is None:
            from app.service import BenchService

            self._service = BenchService(self.data_dir)
        return self._service

    def close(self) -> None:
        if self._service is not None:
            self._service.close()


pass_ctx = click.make_pass_decorator(Context)
