#!/usr/bin/env bash
# focus-validate.sh <csv-file>
#
# Validate a FOCUS cost-and-usage CSV with the FinOps Foundation's validator
# (PyPI: focus-validator, pinned below) against FOCUS 1.2, the newest version
# that release ships rules for. Exit status:
#   0  no rule failed (see "known false positives" below)
#   1  at least one rule failed (the validator's failure list is printed)
#   2  usage error, no usable Python >= 3.12, install failure, or the
#      validator crashed (its own exit code is 1 only on crashes: it exits 0
#      even when rules fail, so this script decides from its output)
#
# Environment:
#   FOCUS_VENV           venv to create/reuse (default: target/focus-venv)
#   FOCUS_PYTHON         Python >= 3.12 to build the venv with (default: search)
#   FOCUS_VERSION        FOCUS version to validate as (default: 1.2)
#   FOCUS_APPLICABILITY  comma-separated applicability criteria, "ALL", or ""
#                        for none (default: the AI-token set below). Rules
#                        tied to a criterion that is not given are SKIPPED,
#                        even when the column is present (e.g. Tags, SkuId,
#                        ConsumedQuantity are not checked with "").
#   FOCUS_IGNORE_RULES   extra comma-separated rule ids to ignore
#
# Works offline once the venv exists: pip runs only when the venv is missing or
# was built for another pin set, and the validator runs with --block-download
# (otherwise it may call the GitHub API for rule files).
set -euo pipefail

FOCUS_VALIDATOR_VERSION=2.2.1
VENV="${FOCUS_VENV:-target/focus-venv}"
FOCUS_VERSION="${FOCUS_VERSION:-1.2}"
DEFAULT_CRITERIA="ACCOUNT_NAMING_SUPPORTED,SUB_ACCOUNT_SUPPORTED,USAGE_MEASUREMENT_SUPPORTED,UNIT_PRICING_SUPPORTED,PUBLIC_PRICE_LIST_SUPPORTED,TAGGING_SUPPORTED"
CRITERIA="${FOCUS_APPLICABILITY-$DEFAULT_CRITERIA}"

# Full pin set, known to work (Python 3.12). pyarrow must stay < 26: the
# validator pins numpy < 2 but leaves pyarrow open, and pyarrow 26 fails at
# import with "pyarrow requires NumPy 2.0 or newer".
CONSTRAINTS="annotated-types==0.8.0
attrs==26.1.0
certifi==2026.10.19.post1
charset-normalizer==3.5.3
ddt==1.7.2
duckdb==1.5.6
focus-validator==${FOCUS_VALIDATOR_VERSION}
graphviz==0.21
idna==3.21
jsonschema==4.26.0
jsonschema-specifications==2025.9.1
multimethod==2.0.2
mypy-extensions==1.2.0
numpy==1.26.4
packaging==26.4
pandas==2.3.3
pandasql==0.7.3
pandera==0.26.1
polars==1.44.2
polars-runtime-32==1.44.2
pyarrow==25.0.1
pydantic==2.14.4
pydantic-core==2.50.5
python-dateutil==4.0.0
pytz==2025.2
pyyaml==6.0.4
referencing==0.37.0
requests==2.34.2
rpds-py==2026.9.1
sqlalchemy==2.1.9
sqlglot==27.29.0
tabulate==0.10.0
typeguard==4.6.1
typing-inspect==0.9.0
typing-inspection==0.4.5
typing-extensions==4.16.0
tzdata==2026.6
urllib3==2.8.0"

die() { echo "focus-validate: $*" >&2; exit 2; }

[ $# -eq 1 ] || die "usage: focus-validate.sh <csv-file>"
[ -f "$1" ] || die "no such file: $1"
DATA="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
case "$VENV" in /*) ;; *) VENV="$PWD/$VENV" ;; esac

py_ok() { [ -n "$1" ] && "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; }

find_python() {
    local c
    if [ -n "${FOCUS_PYTHON:-}" ]; then
        py_ok "$FOCUS_PYTHON" && { echo "$FOCUS_PYTHON"; return 0; }
        die "FOCUS_PYTHON=$FOCUS_PYTHON is not a working Python >= 3.12"
    fi
    # 3.12 first: numpy 1.26.4 (the validator pins numpy < 2) has wheels up to
    # cp312 only, so under 3.13 pip compiles numpy from source (~8 minutes).
    # pyenv shims for python3.12 exist but fail unless that version is selected,
    # so each candidate is run, not just looked up.
    local pyenv_root="${PYENV_ROOT:-$HOME/.pyenv}"
    for c in python3.12 \
        $(ls -d "$pyenv_root"/versions/3.12*/bin/python3 2>/dev/null | sort -rV) \
        python3 python3.13 python3.14 \
        $(ls -d "$pyenv_root"/versions/3.1[3-9]*/bin/python3 2>/dev/null | sort -rV); do
        c="$(command -v "$c" 2>/dev/null || true)"
        py_ok "$c" && { echo "$c"; return 0; }
    done
    return 1
}

STAMP="$VENV/.focus-validate-pins"
WANT_STAMP="$(printf '%s\n' "$CONSTRAINTS" | cksum | cut -d' ' -f1)"
if ! { py_ok "$VENV/bin/python" && [ -x "$VENV/bin/focus-validator" ] \
       && [ "$(cat "$STAMP" 2>/dev/null)" = "$WANT_STAMP" ]; }; then
    PY="$(find_python)" || die "focus-validator $FOCUS_VALIDATOR_VERSION needs Python >= 3.12 (found none; set FOCUS_PYTHON)"
    echo "focus-validate: installing focus-validator $FOCUS_VALIDATOR_VERSION into $VENV (Python: $PY)" >&2
    rm -rf "$VENV"
    "$PY" -m venv "$VENV" || die "could not create venv $VENV"
    printf '%s\n' "$CONSTRAINTS" > "$VENV/constraints.txt"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check \
        -c "$VENV/constraints.txt" "focus-validator==$FOCUS_VALIDATOR_VERSION" pyarrow \
        || die "pip install of focus-validator $FOCUS_VALIDATOR_VERSION failed"
    echo "$WANT_STAMP" > "$STAMP"
fi

# The validator reads its ISO 4217 list from the CWD-relative path
# focus_validator/rules/currency_codes.csv and writes focus_validator_detailed.log
# (DEBUG, rotating) into the CWD: run it from a scratch dir that provides the path.
PKG_DIR="$("$VENV/bin/python" -c 'import focus_validator, os; print(os.path.dirname(focus_validator.__file__))')" \
    || die "focus_validator does not import from $VENV"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/focus_validator"
ln -s "$PKG_DIR/rules" "$WORK/focus_validator/rules"

ARGS=(--data-file "$DATA" --validate-version "$FOCUS_VERSION" --block-download --show-violations)
[ -n "$CRITERIA" ] && ARGS+=(--applicability-criteria "$CRITERIA")

set +e
(cd "$WORK" && PYTHONIOENCODING=utf-8 "$VENV/bin/focus-validator" "${ARGS[@]}") >"$WORK/out.txt" 2>&1
RC=$?
set -e
if [ $RC -ne 0 ]; then
    tail -n 40 "$WORK/out.txt" >&2
    die "focus-validator crashed (exit $RC) on $1"
fi

# Decide from the console report. Rule lines look like
#   "<icon> <RuleId>: PASS|FAIL|SKIPPED  (...)".
# Known false positives: a leaf under a composite OR rule that PASSED is still
# reported as FAIL (InvoiceId-C-004-C "MUST be null" / -C-005-C "MUST NOT be
# null": one of them always fails). Such failures are listed but not counted.
"$VENV/bin/python" - "$WORK/out.txt" "$PKG_DIR/rules" "$FOCUS_VERSION" "${FOCUS_IGNORE_RULES:-}" "$CRITERIA" <<'PY'
import glob, json, os, re, sys

out_path, rules_dir, version, extra_ignore, criteria = sys.argv[1:6]
text = open(out_path, encoding="utf-8", errors="replace").read()

summary = re.search(r"^Total: (\d+) \| Pass: (\d+) \| Fail: (\d+) \| Skipped: (\d+)", text, re.M)
if not summary:
    sys.stdout.write(text[-4000:])
    print("focus-validate: could not find the validator's summary line", file=sys.stderr)
    sys.exit(2)

status = {}
for m in re.finditer(r"^\S+\s+([A-Za-z]+-[A-Z]-\d{3}-[MCO]): (PASS|FAIL|SKIPPED)\b", text, re.M):
    status[m.group(1)] = m.group(2)

# children of composite OR rules, from the rule model the validator used
or_parent = {}
models = [p for p in glob.glob(os.path.join(rules_dir, "model-*.json"))
          if os.path.basename(p)[6:-5] == version or os.path.basename(p)[6:-5].startswith(version + ".")]
models.sort(key=lambda p: [int(x) for x in os.path.basename(p)[6:-5].split(".") if x.isdigit()])
model_name = os.path.basename(models[-1]) if models else "?"
if models:
    rules = json.load(open(models[-1], encoding="utf-8")).get("ModelRules", {})
    for rid, rule in rules.items():
        req = (rule.get("ValidationCriteria") or {}).get("Requirement") or {}
        if req.get("CheckFunction") == "OR":
            for item in req.get("Items", []):
                if item.get("CheckFunction") == "CheckModelRule":
                    or_parent[item["ModelRuleId"]] = rid

ignore_always = {r.strip() for r in extra_ignore.split(",") if r.strip()}
failed = [r for r, s in status.items() if s == "FAIL"]
ignored, counted = [], []
for r in failed:
    if r in ignore_always:
        ignored.append((r, "ignored by FOCUS_IGNORE_RULES"))
    elif r in or_parent and status.get(or_parent[r]) == "PASS":
        ignored.append((r, f"its OR parent {or_parent[r]} passed"))
    else:
        counted.append(r)

total, npass, nfail, nskip = summary.groups()
print(f"focus-validator: FOCUS {version} ({model_name}), criteria: {criteria or '(none)'}")
print(summary.group(0))
fail_section = text.split("--- Failures ---", 1)
if counted and len(fail_section) == 2:
    # print the validator's own failure list, without the ignored entries
    skip_ids = {r for r, _ in ignored}
    keep, block_ignored = [], False
    for line in fail_section[1].strip("\n").splitlines():
        m = re.match(r"^- ([A-Za-z]+-[A-Z]-\d{3}-[MCO]):", line)
        if m:
            block_ignored = m.group(1) in skip_ids
        if not block_ignored:
            keep.append(line)
    print("--- Failures ---")
    print("\n".join(keep))
for r, why in ignored:
    print(f"(not counted: {r} FAIL — {why})")
if counted:
    print(f"FOCUS {version} validation FAILED: {len(counted)} failing rule(s): {', '.join(sorted(counted))}")
    sys.exit(1)
print(f"FOCUS {version} validation PASSED ({npass} passed, {nskip} skipped, {len(ignored)} known false positive(s) not counted)")
PY
