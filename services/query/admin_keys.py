"""Create, revoke and list API keys (reads REDIS_URL like the API).

    python -m services.query.admin_keys create --tenant acme --scopes search,feedback \\
        [--accounts 1,2] [--platforms youtube] [--rate 60/min] [--label "acme staging"]
    python -m services.query.admin_keys revoke <key id>
    python -m services.query.admin_keys list

The key is printed once by `create`; only its sha256 is stored. Without --accounts/--platforms the
tenant sees every account and platform: say so explicitly with --all-data.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path

from shared.auth import ApiKeyStore, DataScope, InvalidKey, IssuedKey, RateLimit, Scope
from shared.cache import connect_redis
from shared.config import RedisSettings

DEV_TENANT = "dev"
DEV_RATE = RateLimit(requests=600, per_seconds=60)


def parse_scopes(text: str) -> list[Scope]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [n for n in names if n not in Scope.__members__]
    if unknown or not names:
        raise ValueError(f"scopes {unknown or text!r}: choose from {', '.join(Scope.__members__)}")
    return [Scope(n) for n in names]


def parse_ids(text: str) -> list[int]:
    try:
        ids = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise ValueError(f"accounts {text!r}: expected comma-separated integer ids") from exc
    if not ids:
        raise ValueError("accounts: give at least one id")
    return ids


def parse_names(text: str) -> list[str]:
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    if not names:
        raise ValueError("platforms: give at least one platform")
    return names


def ensure_dev_key(store: ApiKeyStore, key_file: Path) -> str:
    """The local dev key: reused while it still authenticates, else created (all scopes) and saved."""
    if key_file.exists():
        saved = key_file.read_text().strip()
        try:
            store.authenticate(saved)
            return saved
        except InvalidKey:
            pass  # e.g. a fresh Redis: make a new one
    issued = store.create(DEV_TENANT, list(Scope), DEV_RATE, label="make dev")
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.write_text(issued.key + "\n")
    key_file.chmod(0o600)
    return issued.key


def describe(issued: IssuedKey) -> str:
    r = issued.record
    scope = "all accounts and platforms" if r.data_scope.is_unrestricted() else (
        f"accounts {r.data_scope.account_ids or 'any'}, platforms {r.data_scope.platforms or 'any'}")
    return (f"key:      {issued.key}\nkey id:   {r.key_id}\ntenant:   {r.tenant}\n"
            f"scopes:   {','.join(s.value for s in r.scopes)}\nsees:     {scope}\nrate:     {r.rate}\n"
            "(shown once: only its hash is stored)")


def _when(ms: int | None) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M") if ms else "-"


def command_create(store: ApiKeyStore, args: argparse.Namespace) -> int:
    accounts = parse_ids(args.accounts) if args.accounts else None
    platforms = parse_names(args.platforms) if args.platforms else None
    if accounts is None and platforms is None and not args.all_data:
        raise ValueError("give --accounts and/or --platforms to restrict the tenant, or --all-data to let it "
                         "see everything")
    issued = store.create(args.tenant, parse_scopes(args.scopes), RateLimit.parse(args.rate),
                          DataScope(account_ids=accounts, platforms=platforms), label=args.label)
    print(describe(issued))
    return 0


def command_revoke(store: ApiKeyStore, args: argparse.Namespace) -> int:
    record = store.revoke(args.key_id)
    if record is None:
        print(f"no key with id {args.key_id}", file=sys.stderr)
        return 1
    print(f"revoked {record.key_id} (tenant {record.tenant}) at {_when(record.revoked_at_ms)}")
    return 0


def command_list(store: ApiKeyStore, _: argparse.Namespace) -> int:
    print(f"{'key id':<14}{'tenant':<16}{'scopes':<24}{'rate':<12}{'created':<18}{'revoked':<18}sees")
    for r in store.list():
        sees = "everything" if r.data_scope.is_unrestricted() else r.data_scope.model_dump_json(exclude_none=True)
        print(f"{r.key_id:<14}{r.tenant:<16}{','.join(r.scopes):<24}{str(r.rate):<12}"
              f"{_when(r.created_at_ms):<18}{_when(r.revoked_at_ms):<18}{sees}")
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m services.query.admin_keys", description=__doc__.splitlines()[0])
    commands = root.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="issue a key")
    create.add_argument("--tenant", required=True)
    create.add_argument("--scopes", required=True, help=f"comma-separated: {', '.join(Scope.__members__)}")
    create.add_argument("--accounts", help="comma-separated account ids the tenant may see")
    create.add_argument("--platforms", help="comma-separated platforms the tenant may see")
    create.add_argument("--all-data", action="store_true", help="no data restriction (internal teams)")
    create.add_argument("--rate", default="60/min", help="requests per s|min|hour|day, e.g. 60/min")
    create.add_argument("--label", help="free text, e.g. who it is for")
    create.set_defaults(run=command_create)
    revoke = commands.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")
    revoke.set_defaults(run=command_revoke)
    commands.add_parser("list", help="every key, revoked ones included").set_defaults(run=command_list)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    store = ApiKeyStore(connect_redis(RedisSettings().redis_url))
    try:
        return args.run(store, args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
