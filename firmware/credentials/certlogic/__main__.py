"""Command line for rule authors and technicians: validate, evaluate, run a rule set.

    python -m firmware.credentials.certlogic validate EXPR_OR_RULES.json
    python -m firmware.credentials.certlogic evaluate EXPR.json DATA.json
    python -m firmware.credentials.certlogic run RULES.json PAYLOAD.json --country NL \\
        --at 2021-10-01T12:00:00Z [--issuer DE] [--region X] [--valuesets DIR]
Prints outcomes and problems only, never payload values.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from firmware.credentials.certlogic import (
    CertLogicError,
    DateTime,
    build_external,
    certificate_type_of,
    evaluate,
    load_value_sets,
    overall,
    parse_rules,
    run_rules,
    select_rules,
    validate,
)
from firmware.credentials.certlogic.datetimes import parse_date_time
from firmware.protocol.decoded import Decoded


def _read_json(path: str) -> Decoded:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _validate(args: argparse.Namespace) -> int:
    document = _read_json(args.file)
    # A rule (set) in the gateway format, or a bare expression.
    is_rules = isinstance(document, list) and document and all(
        isinstance(item, dict) and "Logic" in item for item in document) or (
        isinstance(document, dict) and "Logic" in document)
    problems: list[str] = []
    if is_rules:
        for rule in parse_rules(document):
            problems += [f"{rule.identifier} {rule.version}: {p}" for p in rule.logic_problems]
    else:
        problems = validate(document)
    for problem in problems:
        print(problem)
    print(f"{len(problems)} problem(s)")
    return 1 if problems else 0


def _evaluate(args: argparse.Namespace) -> int:
    result = evaluate(_read_json(args.expression), _read_json(args.data))
    # Date-times (anywhere in the result) print as their ISO string.
    print(json.dumps(result, default=lambda v: v.isoformat() if isinstance(v, DateTime) else str(v)))
    return 0


def _run(args: argparse.Namespace) -> int:
    payload = _read_json(args.payload)
    at = parse_date_time(args.at).to_datetime()
    cert_type = args.type or certificate_type_of(payload)
    if cert_type is None:
        print("payload has not exactly one of v / t / r: give --type", file=sys.stderr)
        return 2
    rules = select_rules(parse_rules(Path(args.rules).read_bytes()), args.country, cert_type, at,
                         issuer_country=args.issuer, region=args.region)
    value_sets = load_value_sets(Path(args.valuesets)) if args.valuesets else {}
    external = build_external(at, value_sets, args.country, issuer_country_code=args.issuer or "",
                              region=args.region or "")
    results = run_rules(rules, payload, external)
    for result in results:
        reason = f"  ({result.reason})" if result.reason else ""
        print(f"{result.outcome.value:4}  {result.rule.identifier} {result.rule.version}{reason}")
    print(f"overall: {overall(results).value} ({len(results)} rules)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m firmware.credentials.certlogic",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("validate", help="list problems of an expression or rule set")
    check.add_argument("file")
    check.set_defaults(handler=_validate)
    run_one = commands.add_parser("evaluate", help="evaluate an expression on data")
    run_one.add_argument("expression")
    run_one.add_argument("data")
    run_one.set_defaults(handler=_evaluate)
    run_set = commands.add_parser("run", help="select and run a rule set on a DCC payload")
    run_set.add_argument("rules")
    run_set.add_argument("payload")
    run_set.add_argument("--country", required=True)
    run_set.add_argument("--at", required=True, help="validation clock, ISO 8601 with zone")
    run_set.add_argument("--type", help="Vaccination, Test or Recovery (default: from payload)")
    run_set.add_argument("--issuer", help="issuing country, for its Invalidation rules")
    run_set.add_argument("--region")
    run_set.add_argument("--valuesets", help="folder of EU value-set JSON files")
    run_set.set_defaults(handler=_run)
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except (CertLogicError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
