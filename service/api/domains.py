"""Domains (toolstack view): create and place, read, retarget, delete, placements, exports."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import StringConstraints, TypeAdapter

from service.api.auth import Admin
from service.api.deps import Now, SettingsDep, database, run
from service.api.etag import IfMatch, check_if_match, etag
from service.api.filters import (
    ExternalIdQuery,
    LabelQuery,
    NameQuery,
    PlacementLimit,
    parse_labels,
)
from service.api.ha import HaOvercommitQuery, overcommit
from service.api.idempotency import IdempotencyKey, create_once, created
from service.api.lean import body_and_errors, lean_endpoint, parameter, principal_for
from service.api.pagination import CursorQuery, LimitQuery, page_size
from service.api.problems import InvalidInput, responses
from service.api.render import model_response
from service.core import domain_requests as core
from service.core import domains, listing, placement
from service.core.idempotent import Reply
from service.core.placement import DEFAULT_LIMIT
from service.core.target_on_loop import change_target_on_loop
from service.core.views import placement_out
from service.exports.libvirt_domain import Definition
from service.schemas.agent import GuestToken
from service.schemas.common import Page
from service.schemas.domains import (
    DomainCreate,
    DomainCreated,
    DomainOut,
    DomainPatch,
    Placements,
    TargetPut,
)

router = APIRouter(prefix="/v1/domains", tags=["domains"])


def _created(domain: DomainCreated) -> Reply:
    return created(domain, f"/v1/domains/{domain.id}", ETag=etag(domain.version))


@router.post(
    "",
    status_code=201,
    response_model=DomainCreated,
    responses=responses(401, 403, 404, 409, 413, 422),
    summary="Create a domain with a virtual NUMA topology and place it on a host",
)
async def create_domain(
    body: DomainCreate,
    request: Request,
    principal: Admin,
    now: Now,
    idempotency_key: IdempotencyKey = None,
    ha_overcommit: HaOvercommitQuery = False,
) -> JSONResponse:
    actor = principal.actor
    ha = overcommit(principal, ha_overcommit)
    return await create_once(
        request, idempotency_key, body, actor, now, _created, core.create, body, actor, now, ha
    )


@router.get("", response_model=Page[DomainOut], responses=responses(401, 403, 422))
async def list_domains(
    request: Request,
    settings: SettingsDep,
    _: Admin,
    host_id: Annotated[uuid.UUID | None, Query(description="Only domains on this host")] = None,
    name: NameQuery = None,
    external_id: ExternalIdQuery = None,
    label: LabelQuery = None,
    limit: LimitQuery = None,
    cursor: CursorQuery = None,
) -> Response:
    page = await run(
        request,
        listing.list_domains,
        cursor,
        page_size(limit, settings),
        host_id=None if host_id is None else str(host_id),
        name=name,
        external_id=external_id,
        labels=parse_labels(label),
    )
    return model_response(page)


def _with_etag(out: DomainOut) -> Response:
    return model_response(out, {"ETag": etag(out.version)})


@router.get("/by-name/{name}", response_model=DomainOut, responses=responses(401, 403, 404, 422))
async def get_domain_by_name(name: str, request: Request, _: Admin) -> Response:
    return _with_etag(await run(request, core.read_by_name, name))


@router.get("/{domain_id}", response_model=DomainOut, responses=responses(401, 403, 404, 422))
async def get_domain(domain_id: uuid.UUID, request: Request, _: Admin) -> Response:
    return _with_etag(await run(request, core.read, str(domain_id)))


_UUID = TypeAdapter(uuid.UUID)
_BOOL = TypeAdapter(bool)
_IF_MATCH = TypeAdapter(Annotated[str, StringConstraints(max_length=128)])


async def _target(request: Request) -> Response:
    """The target route's lean handler (`api/lean.py`, issue 25): the orchestrators' hot write.
    In FastAPI's order: the query refusal and the principal, then the path, query and header
    parameters and the body (their 422s together), then the role's right to overcommit. The
    unit is awaited on the event loop (`target_on_loop`); what that path leaves takes one hop
    to the thread pool."""
    principal = await principal_for(request)
    errors: list[Any] = []
    domain_id = parameter(_UUID, request.path_params["domain_id"], ("path", "domain_id"), errors)
    query = request.query_params.get("ha_overcommit")
    ha_overcommit = parameter(_BOOL, query, ("query", "ha_overcommit"), errors)
    if_match = parameter(_IF_MATCH, request.headers.get("if-match"), ("header", "If-Match"), errors)
    body, body_errors = await body_and_errors(request)
    errors += body_errors
    if errors or body is None:
        raise RequestValidationError(errors)
    ha = overcommit(principal, bool(ha_overcommit))
    now = request.app.state.clock()

    def precondition(version: int) -> None:
        check_if_match(if_match, version)

    args = (str(domain_id), body, principal.actor, now, precondition)
    out = await change_target_on_loop(database(request), *args)
    if out is None:
        out = await run(request, core.change_target, *args, ha)
    return _with_etag(out)


@lean_endpoint(
    router,
    "/{domain_id}/target",
    _target,
    method="PUT",
    response_model=DomainOut,
    responses=responses(401, 403, 404, 409, 412, 422),
    summary="Set the balloon target; per-vnode targets follow the policy",
)
async def put_target(
    domain_id: uuid.UUID,
    body: TargetPut,
    request: Request,
    principal: Admin,
    now: Now,
    if_match: IfMatch = None,
    ha_overcommit: HaOvercommitQuery = False,
) -> Response:
    # The declaration (`lean_endpoint`): `_target` serves the route.
    raise NotImplementedError  # pragma: no cover


@router.patch(
    "/{domain_id}",
    response_model=DomainOut,
    responses=responses(401, 403, 404, 409, 412, 422),
    summary="Set a domain's labels or external id.",
)
async def patch_domain(
    domain_id: uuid.UUID,
    body: DomainPatch,
    request: Request,
    principal: Admin,
    now: Now,
    if_match: IfMatch = None,
) -> Response:
    out = await run(
        request,
        core.patch,
        str(domain_id),
        body,
        principal.actor,
        lambda version: check_if_match(if_match, version),
        now,
    )
    return _with_etag(out)


@router.delete(
    "/{domain_id}",
    status_code=204,
    responses=responses(401, 403, 404, 409, 412, 422),
    summary="Destroy a domain and free its memory",
)
async def delete_domain(
    domain_id: uuid.UUID,
    request: Request,
    principal: Admin,
    now: Now,
    if_match: IfMatch = None,
) -> Response:
    await run(
        request,
        domains.delete_domain,
        str(domain_id),
        principal.actor,
        now,
        lambda version: check_if_match(if_match, version),
    )
    return Response(status_code=204)


@router.post(
    "/{domain_id}/guest-token",
    response_model=GuestToken,
    responses=responses(401, 403, 404, 422),
    summary="Rotate the guest's token: the old one stops working at once",
)
async def rotate_guest_token(
    domain_id: uuid.UUID, request: Request, principal: Admin, now: Now
) -> GuestToken:
    return await run(request, core.rotate_guest_token, str(domain_id), principal.actor, now)


@router.get(
    "/{domain_id}/placements",
    response_model=Placements,
    responses=responses(401, 403, 404, 422),
    summary="Rank the active hosts for this domain: capacity, then distortion, then balance.",
)
async def get_placements(
    domain_id: uuid.UUID, request: Request, _: Admin, limit: PlacementLimit = DEFAULT_LIMIT
) -> Placements:
    ranked = await run(request, placement.for_domain, str(domain_id), limit)
    return Placements(domain_id=str(domain_id), hosts=[placement_out(r) for r in ranked])


ExportFormat = Literal["xl", "libvirt", "libvirt-domain", "xenstore"]
_MEDIA = {
    "xl": "text/plain",
    "libvirt": "application/xml",
    "libvirt-domain": "application/xml",
    "xenstore": "text/plain",
}


#: Paths on the hypervisor host and the kernel command line, as XML can carry them: no control
#: characters (nor U+FFFE, U+FFFF); a path is absolute.
_HOST_PATH = r"^/[^\x00-\x1f\x7f\ufffe\uffff]*$"
_CMDLINE = r"^[^\x00-\x1f\x7f\ufffe\uffff]*$"
_PATH_MAX = 4096
_CMDLINE_MAX = 2048  # x86's COMMAND_LINE_SIZE


def _host_path(what: str) -> Any:
    return Query(
        max_length=_PATH_MAX,
        pattern=_HOST_PATH,
        description=f"libvirt-domain only: {what} (an absolute path on the hypervisor host)",
    )


def _definition(
    fmt: ExportFormat,
    domain_type: Literal["kvm", "qemu"] | None,
    kernel: str | None,
    initrd: str | None,
    cmdline: str | None,
    serial_log: str | None,
) -> Definition | None:
    """The additions asked for, or None; they only go with the complete libvirt domain, and an
    initrd or a command line only with a kernel."""
    asked = {
        name: value
        for name, value in (
            ("domain_type", domain_type),
            ("kernel", kernel),
            ("initrd", initrd),
            ("cmdline", cmdline),
            ("serial_log", serial_log),
        )
        if value is not None
    }
    if not asked:
        return None
    if fmt != "libvirt-domain":
        raise InvalidInput(
            f"{', '.join(asked)}: only with format=libvirt-domain, not {fmt}",
            errors=[{"loc": ["query", n], "msg": "only with format=libvirt-domain"} for n in asked],
        )
    if kernel is None and (initrd is not None or cmdline is not None):
        lonely = [n for n in ("initrd", "cmdline") if n in asked]
        raise InvalidInput(
            f"{' and '.join(lonely)} need a kernel",
            errors=[{"loc": ["query", n], "msg": "needs kernel"} for n in lonely],
        )
    return Definition(
        domain_type=domain_type or "kvm",
        kernel=kernel,
        initrd=initrd,
        cmdline=cmdline,
        serial_log=serial_log,
    )


@router.get(
    "/{domain_id}/export",
    response_class=PlainTextResponse,
    responses={
        **responses(401, 403, 404, 409, 422),
        200: {
            "description": "xl.cfg fragment, libvirt XML fragment, a complete libvirt "
            "<domain type='kvm'> with one virtio-mem device per vnode, or xenstore keys (KiB)",
            "content": {"text/plain": {}, "application/xml": {}},
        },
    },
    summary="Export the vNUMA configuration for xl, libvirt or xenstore",
)
async def export(
    domain_id: uuid.UUID,
    request: Request,
    _: Admin,
    now: Now,
    format: Annotated[
        ExportFormat, Query(description="xl | libvirt | libvirt-domain | xenstore")
    ] = "xl",
    domain_type: Annotated[
        Literal["kvm", "qemu"] | None,
        Query(description="libvirt-domain only: `<domain type=...>` (default kvm)"),
    ] = None,
    kernel: Annotated[str | None, _host_path("the kernel to boot directly")] = None,
    initrd: Annotated[str | None, _host_path("its initrd (with kernel)")] = None,
    cmdline: Annotated[
        str | None,
        Query(
            max_length=_CMDLINE_MAX,
            pattern=_CMDLINE,
            description="libvirt-domain only: the kernel's command line (with kernel)",
        ),
    ] = None,
    serial_log: Annotated[
        str | None, _host_path("write the first serial port (the console) to this file")
    ] = None,
) -> PlainTextResponse:
    definition = _definition(format, domain_type, kernel, initrd, cmdline, serial_log)
    text = await run(request, core.export, str(domain_id), format, definition, now)
    return PlainTextResponse(text, media_type=_MEDIA[format])
