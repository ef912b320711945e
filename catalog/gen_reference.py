#!/usr/bin/env python3
"""Write the generated parts of docs/reference.md from the catalog.

docs/reference.md is partly written by hand (configuration, errors, the
objects in the database) and partly generated from
catalog/connector-catalog.json: every region between

    <!-- generated:NAME (catalog/gen_reference.py) -->
    <!-- /generated:NAME -->

is rewritten from the catalog (NAME is one of the REGIONS below: the
platform roles, the secrets, the actions with their parameters and results,
the lease, the project's roles, the shared types). Edit the catalog, not
those regions, then run

    python3 catalog/gen_reference.py           rewrite docs/reference.md
    python3 catalog/gen_reference.py --check   exit 1 when it is stale (the test command runs this)

Standard library only.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

ROOT = Path(__file__).resolve().parent.parent
CATALOG = ROOT / "catalog" / "connector-catalog.json"
REFERENCE = ROOT / "docs" / "reference.md"

Node = Dict[str, Any]


# ---------------------------------------------------------------- rendering


def cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def code(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return f"`{text}`"


def ref_name(node: Node) -> Optional[str]:
    ref = node.get("$ref")
    return ref.rsplit("/", 1)[-1] if isinstance(ref, str) else None


def link(name: str) -> str:
    return f"[`{name}`](#{name})"


def signature(node: Node) -> str:
    """An object alternative in one line: `type` `"user"`, `id` uuid."""
    parts = []
    for key, sub in node.get("properties", {}).items():
        optional = "" if key in node.get("required", []) else " (optional)"
        parts.append(f"`{key}` {kind(sub)}{optional}")
    return "an object: " + ", ".join(parts)


def kind(node: Node) -> str:
    """The type of a schema node, in words."""
    name = ref_name(node)
    if name:
        return link(name)
    if "const" in node:
        return code(node["const"])
    if "enum" in node:
        return " or ".join(code(v) for v in node["enum"])
    for key in ("oneOf", "anyOf"):
        if key in node:
            return " or ".join(signature(a) if a.get("type") == "object" else kind(a) for a in node[key])
    types = node.get("type")
    types = types if isinstance(types, list) else [types] if types else []
    words = []
    for t in types:
        if t == "array":
            items = node.get("items", {})
            inner = "object" if items.get("type") == "object" and "properties" in items else kind(items) if items else "any"
            words.append(f"array of {inner}")
        elif t == "integer" and ("minimum" in node or "maximum" in node):
            words.append(f"integer {node.get('minimum', '')}…{node.get('maximum', '')}")
        elif t == "string" and node.get("format") == "date-time":
            words.append("string (RFC 3339)")
        elif t is not None:
            words.append(str(t))
    return " or ".join(words) if words else "any"


def inline_object(node: Node) -> Optional[Node]:
    """The node itself (or its array's items) when it is an object with
    properties written in place (not a $ref)."""
    types = node.get("type")
    types = types if isinstance(types, list) else [types]
    if "object" in types and "properties" in node:
        return node
    if "array" in types and isinstance(node.get("items"), dict):
        items = node["items"]
        if items.get("type") == "object" and "properties" in items:
            return items
    return None


def property_rows(node: Node, prefix: str = "") -> Iterator[Tuple[str, Node, bool]]:
    """(dotted key, schema, required) for every property, nested inline
    objects flattened (`exposure.mode`, `applied[].version`)."""
    required = set(node.get("required", []))
    for name, sub in node.get("properties", {}).items():
        key = prefix + name
        yield key, sub, name in required
        inner = inline_object(sub)
        if inner is not None:
            array = "array" in (sub.get("type") if isinstance(sub.get("type"), list) else [sub.get("type")])
            yield from property_rows(inner, key + ("[]." if array else "."))


def properties_table(node: Node, first: str = "key", defaults: bool = False) -> List[str]:
    if defaults:
        lines = [f"| {first} | type | required / default | description |", "|---|---|---|---|"]
    else:
        lines = [f"| {first} | type | present | description |", "|---|---|---|---|"]
    for key, sub, required in property_rows(node):
        if defaults:
            flag = "required" if required else f"default {code(sub['default'])}" if "default" in sub else "optional"
        else:
            flag = "always" if required else "when set"
        lines.append(f"| `{key}` | {cell(kind(sub))} | {flag} | {cell(sub.get('description', ''))} |")
    return lines


def constraints(node: Node) -> List[str]:
    out = []
    if "pattern" in node:
        out.append(f"pattern {code(node['pattern'])}")
    if "minLength" in node or "maxLength" in node:
        out.append(f"{node.get('minLength', 0)}–{node.get('maxLength', '…')} characters")
    if "maxItems" in node:
        out.append(f"at most {node['maxItems']} items")
    if node.get("uniqueItems"):
        out.append("no duplicates")
    return out


# ---------------------------------------------------------------- regions


def platform_roles(cat: Node) -> List[str]:
    classes = cat["$defs"]["access_class"]["enum"]
    lines = ["| platform role | access class |", "|---|---|"]
    for cls in classes:
        for role, mapped in cat["role_mapping"].items():
            if mapped == cls:
                lines.append(f"| `{role}` | `{cls}` |")
    return lines


def secrets(cat: Node) -> List[str]:
    s = cat["secrets"]
    reads = set(s["reads"])
    lines = [
        f"KV v2 secret at mount {code(s['mount'])}, path {code(s['path'])} (the defaults of "
        "`openbao.mount` and `openbao.path`).",
        "",
        "| key | read by the connector |",
        "|---|---|",
    ]
    for key in s["keys"]:
        lines.append(f"| `{key}` | {'yes' if key in reads else ''} |")
    return lines


def actions(cat: Node) -> List[str]:
    lines = ["| action | changes the database | returns a lease | what it does |", "|---|---|---|---|"]
    for name, action in cat["actions"].items():
        first = action["description"].split(". ")[0].rstrip(".")
        lines.append(f"| {link(name)} | {'yes' if action['mutates'] else ''} | {'yes' if action['issues_lease'] else ''} | {cell(first)} |")
    for name, action in cat["actions"].items():
        lines += ["", f"### `{name}`", "", action["description"], ""]
        notes = []
        if action["mutates"]:
            notes.append("can change the database")
        else:
            notes.append("reads only")
        if action["issues_lease"]:
            notes.append("the result carries a lease (secrets: treat it as sensitive)")
        lines += ["; ".join(notes).capitalize() + ".", ""]
        lines += ["Parameters:", ""] + properties_table(action["params"], "parameter", defaults=True)
        result = action["result"]
        plan = None
        if "anyOf" in result:
            alternatives = [a for a in result["anyOf"] if ref_name(a) != "plan"]
            plan = next((a for a in result["anyOf"] if ref_name(a) == "plan"), None)
            result = alternatives[0]
        lines += ["", "Result:" + (f" {result['description']}." if result.get("description") else ""), ""]
        lines += properties_table(result)
        if plan is not None:
            lines += ["", f"With `dry_run: true` the result is a {link('plan')} instead."]
    return lines


def flattened(def_name: str) -> Callable[[Node], List[str]]:
    def render(cat: Node) -> List[str]:
        node = cat["$defs"][def_name]
        return [node["description"][:1].upper() + node["description"][1:] + ".", ""] + properties_table(node)

    return render


def types(cat: Node) -> List[str]:
    lines: List[str] = []
    elsewhere = {"lease": "the-lease", "roles": "per-project"}
    for name, node in cat["$defs"].items():
        lines += [f"### `{name}`", ""]
        desc = node.get("description", "")
        lines.append(desc[:1].upper() + desc[1:] + ("." if desc and not desc.endswith(".") else ""))
        if name in elsewhere:
            lines += ["", f"Its keys: [above](#{elsewhere[name]})."]
        elif "properties" in node:
            lines += [""] + properties_table(node)
        elif "oneOf" in node or "anyOf" in node:
            lines += ["", "One of:", ""]
            for alt in node.get("oneOf", node.get("anyOf")):
                if alt.get("type") == "object":
                    what = next((p["description"] for p in alt.get("properties", {}).values() if "const" in p), "")
                    lines.append(f"- {signature(alt)}" + (f": {what}" if what else ""))
                else:
                    lines.append(f"- {kind(alt)}")
        else:
            detail = [kind(node)] + constraints(node)
            lines += ["", "Type: " + ", ".join(detail) + "."]
        lines.append("")
    return lines[:-1]


REGIONS: Dict[str, Callable[[Node], List[str]]] = {
    "platform-roles": platform_roles,
    "secrets": secrets,
    "actions": actions,
    "lease": flattened("lease"),
    "project-roles": flattened("roles"),
    "types": types,
}


# ---------------------------------------------------------------- the file


def render(text: str, cat: Node) -> str:
    seen = set()

    def replace(m: "re.Match[str]") -> str:
        name = m.group(1)
        if name not in REGIONS:
            raise SystemExit(f"gen_reference: unknown region {name!r} in {REFERENCE}")
        seen.add(name)
        body = "\n".join(REGIONS[name](cat))
        return f"{m.group(0).splitlines()[0]}\n\n{body}\n\n<!-- /generated:{name} -->"

    out = re.sub(
        r"<!-- generated:([a-z-]+) \(catalog/gen_reference\.py\) -->\n.*?<!-- /generated:\1 -->",
        replace,
        text,
        flags=re.S,
    )
    missing = set(REGIONS) - seen
    if missing:
        raise SystemExit(f"gen_reference: {REFERENCE} lacks the regions {sorted(missing)}")
    return out


def main(argv: List[str]) -> int:
    cat = json.loads(CATALOG.read_text(encoding="utf-8"))
    text = REFERENCE.read_text(encoding="utf-8")
    out = render(text, cat)
    if "--check" in argv:
        if out != text:
            print(
                f"gen_reference: {REFERENCE.relative_to(ROOT)} is stale: run python3 catalog/gen_reference.py",
                file=sys.stderr,
            )
            return 1
        print(f"gen_reference: {REFERENCE.relative_to(ROOT)} matches the catalog")
        return 0
    if out != text:
        REFERENCE.write_text(out, encoding="utf-8")
        print(f"gen_reference: wrote {REFERENCE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
