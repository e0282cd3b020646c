#!/usr/bin/env python3
"""Generates ../table.rs: the protobuf schema of the Kubernetes kinds, for the wire decoder.

Inputs (see README.md):
  * k8s-pb's prost sources: messages, field tags, wire types, element message types;
  * k8s-openapi's sources: JSON field names (and which fields are optional), used for
    fields the Go type info below does not know;
  * a kubectl binary: Go struct tags (JSON names, omitempty, inline) and pointer-ness,
    which decide whether a zero scalar on the wire is emitted (see gotypes.py).

Usage: gen_table.py [--k8s-pb DIR] [--k8s-openapi DIR] [--kubectl PATH] [-o FILE]
"""

import argparse
import glob
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gotypes  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REGISTRY = os.path.expanduser("~/.cargo/registry/src")

# Module folder in k8s-pb → Go import path prefix.
GO_ROOTS = {
    "api": "k8s.io/api",
    "apimachinery": "k8s.io/apimachinery",
    "apiextensions_apiserver": "k8s.io/apiextensions-apiserver",
    "kube_aggregator": "k8s.io/kube-aggregator",
    "metrics": "k8s.io/metrics",
}
# API group of a k8s.io/api package folder, where it is not `<folder>.k8s.io`.
GROUPS = {
    "core": "",
    "apps": "apps",
    "batch": "batch",
    "autoscaling": "autoscaling",
    "policy": "policy",
    "extensions": "extensions",
    "apiserverinternal": "internal.apiserver.k8s.io",
    "flowcontrol": "flowcontrol.apiserver.k8s.io",
    "rbac": "rbac.authorization.k8s.io",
    "custom_metrics": "custom.metrics.k8s.io",
    "external_metrics": "external.metrics.k8s.io",
}
META = "io.k8s.apimachinery.pkg.apis.meta.v1"
# Messages whose JSON form is not an object of their fields (Go custom MarshalJSON).
SPECIAL = {
    f"{META}.Time": "Time",
    f"{META}.MicroTime": "MicroTime",
    f"{META}.Duration": "Duration",
    f"{META}.FieldsV1": "RawJson",
    f"{META}.Verbs": "StringList",
    "io.k8s.apimachinery.pkg.runtime.RawExtension": "RawJson",
    "io.k8s.apimachinery.pkg.api.resource.Quantity": "Quantity",
    "io.k8s.apimachinery.pkg.api.resource.QuantityValue": "Quantity",
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": "IntOrString",
}
SPECIAL_SUFFIX = {
    ".ExtraValue": "StringList",
    "apiextensions.v1.JSON": "RawJson",
    "apiextensions.v1.JSONSchemaPropsOrArray": "SchemaOrArray",
    "apiextensions.v1.JSONSchemaPropsOrBool": "SchemaOrBool",
    "apiextensions.v1.JSONSchemaPropsOrStringArray": "SchemaOrStringArray",
}
# meta/v1 kinds that every group version serves (client-go sends them with the group
# version of the resource they act on).
META_KINDS = ["DeleteOptions", "Status"]
# Plain (non-pointer) `omitempty` scalars of types the kubectl binary does not carry
# (apiextensions, kube-aggregator) or of fields newer than it, from upstream's types.go.
# Everything else without Go info is assumed to be a pointer when numeric/bool.
GO_PLAIN_OMITEMPTY = {
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps": {
        "exclusiveMaximum", "exclusiveMinimum", "uniqueItems", "nullable",
        "x-kubernetes-embedded-resource", "x-kubernetes-int-or-string",
    },
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionSpec": {"preserveUnknownFields"},
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionVersion": {"deprecated"},
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceColumnDefinition": {"priority"},
    "io.k8s.kube-aggregator.pkg.apis.apiregistration.v1.APIServiceSpec": {"insecureSkipTLSVerify"},
    "io.k8s.api.core.v1.PodStatus": {"observedGeneration"},
    "io.k8s.api.core.v1.PodCondition": {"observedGeneration"},
}
# k8s-pb field name → k8s-openapi field name, where the two generators disagree.
OPENAPI_ALIASES = {"ref": "ref_path", "open_apiv3_schema": "open_api_v3_schema"}
SCALARS = {"bool": "Bool", "int32": "I32", "int64": "I64", "double": "F64", "string": "Str", "bytes": "Bytes"}


def latest(pattern):
    found = sorted(glob.glob(os.path.join(REGISTRY, "*", pattern)))
    if not found:
        raise SystemExit(f"not found in the cargo registry: {pattern} (run `cargo fetch`?)")
    return found[-1]


# ---------------------------------------------------------------- k8s-pb (prost) sources

def rust_type_end(text, i):
    """Index of the `,` that ends a field type starting at i (angle brackets balanced)."""
    depth = 0
    while True:
        c = text[i]
        if c == "<":
            depth += 1
        elif c == ">":
            depth -= 1
        elif c == "," and depth == 0:
            return i
        i += 1


def message_path(rust_type, module):
    """Dotted module path of the message named by a prost field type, or None."""
    t = re.sub(r"\s+", "", rust_type)
    for wrapper in ("::core::option::Option<", "::prost::alloc::vec::Vec<", "::prost::alloc::boxed::Box<"):
        while t.startswith(wrapper):
            t = t[len(wrapper):-1].rstrip(",")
    if "BTreeMap<" in t:
        t = t[t.index("<") + 1:-1]
        t = t.split(",", 1)[1].rstrip(",")
    if t.startswith("::prost::alloc::") or t in ("bool", "i32", "i64", "f64"):
        return None
    parts = t.split("::")
    base = list(module)
    while parts[0] == "super":
        parts.pop(0)
        base.pop()
    return ".".join(base + parts)


def parse_k8s_pb(root):
    messages = {}
    for path in glob.glob(os.path.join(root, "**", "mod.rs"), recursive=True):
        module = os.path.relpath(os.path.dirname(path), root).split(os.sep)
        text = open(path).read()
        for m in re.finditer(r"^pub struct (\w+) \{(?:\}|\n(.*?)^\})", text, re.S | re.M):
            name, body = m.group(1), m.group(2) or ""
            fields = []
            for f in re.finditer(r"#\[prost\(([^\]]*)\)\]\s*pub (?:r#)?(\w+):", body):
                attrs, snake = f.group(1), f.group(2)
                rust_type = body[f.end():rust_type_end(body, f.end())]
                tag = int(re.search(r'tag = "(\d+)"', attrs).group(1))
                kind = attrs.split(",")[0].split("=")[0].strip()
                if kind == "btree_map":
                    value = re.search(r'btree_map = "string, (\w+)"', attrs).group(1)
                    card = "map"
                else:
                    value = kind
                    card = "rep" if "repeated" in attrs.split(",") or " repeated" in attrs else "one"
                target = message_path(rust_type, module) if value == "message" else None
                fields.append({"snake": snake, "tag": tag, "value": value, "card": card, "target": target})
            messages[".".join(module + [name])] = {"module": module, "name": name, "fields": fields}
    return messages


# ---------------------------------------------------------------- k8s-openapi sources

def parse_k8s_openapi(root):
    """{definition name: {"json": {snake: json name}, "optional": {snake: bool}}}.

    The v1_33 tree wins; newer trees only add definitions and fields it lacks."""
    defs = {}
    for tree in sorted(glob.glob(os.path.join(root, "src", "v1_*")), key=lambda p: int(p.rsplit("_", 1)[1])):
        if int(tree.rsplit("_", 1)[1]) < 33:
            continue
        for path in glob.glob(os.path.join(tree, "**", "*.rs"), recursive=True):
            text = open(path).read()
            m = re.match(r"// Generated from definition (\S+)", text)
            if not m:
                continue
            d = defs.setdefault(m.group(1), {"json": {}, "optional": {}})
            for j, snake in re.findall(r'"([^"]+)" => Field::Key_(\w+),', text):
                d["json"].setdefault(snake.rstrip("_"), j)
            s = re.search(r"^pub struct \w+ \{\n(.*?)^\}", text, re.S | re.M)
            if s:
                for snake, ty in re.findall(r"^    pub (\w+): (.*),$", s.group(1), re.M):
                    d["optional"].setdefault(snake.rstrip("_"), ty.startswith("Option<"))
    return defs


# ---------------------------------------------------------------- joining the sources

def go_package(module):
    return GO_ROOTS[module[0]] + "/" + "/".join(module[1:])


def camel(snake):
    head, *rest = snake.split("_")
    return head + "".join(w[:1].upper() + w[1:] for w in rest)


def group_version(module):
    """(group, version) for a k8s-pb module path of an API group, else None."""
    version = module[-1]
    if module[0] == "api":
        folder = module[1]
    elif module[0] in ("apiextensions_apiserver", "kube_aggregator", "metrics") and module[1:3] == ["pkg", "apis"]:
        folder = module[3]
    else:
        return None
    return GROUPS.get(folder, f"{folder}.k8s.io"), version


def inlined(parent_oa, target_pb):
    """Whether k8s-openapi shows the target message's fields flattened into the parent."""
    names = [OPENAPI_ALIASES.get(f["snake"], f["snake"]) for f in target_pb["fields"]]
    return bool(names) and all(n in parent_oa["json"] for n in names)


def build(pb, openapi, go, warn):
    # Canonical (Go / OpenAPI) type names, matched case-insensitively to prost's names.
    go_names = {}
    for (pkg, name) in go:
        go_names[(pkg, name.lower())] = name
    oa_names = {d.lower(): d for d in openapi}
    out = {}
    for key, msg in pb.items():
        pkg = go_package(msg["module"])
        prefix = "io.k8s." + pkg[len("k8s.io/"):].replace("/", ".")
        low = msg["name"].lower()
        go_name = go_names.get((pkg, low))
        oa_name = oa_names.get(f"{prefix}.{low}".lower())
        name = go_name or (oa_name.rsplit(".", 1)[1] if oa_name else msg["name"])
        full = f"{prefix}.{name}"
        special = SPECIAL.get(full) or next((v for k, v in SPECIAL_SUFFIX.items() if full.endswith(k)), "None")
        out[key] = {"full": full, "go": go.get((pkg, go_name)) if go_name else None,
                    "oa": openapi.get(oa_name) if oa_name else None, "special": special, "pb": msg}
    for key, m in out.items():
        m["fields"] = []
        for f in m["pb"]["fields"]:
            gf = (m["go"] or {}).get(f["tag"])
            oa = m["oa"]
            oa_snake = OPENAPI_ALIASES.get(f["snake"], f["snake"])
            flags = []
            if gf:
                if gf["json"] == "-":
                    continue
                json = gf["json"]
                if gf["inline"] and not json:
                    flags.append("INLINE")
                omit_zero = gf["omitempty"] and not gf["pointer"]
                if oa and json and oa["json"].get(oa_snake, json) != json:
                    warn(f"{m['full']}.{f['snake']}: Go says {json}, k8s-openapi {oa['json'][oa_snake]}")
            elif oa and oa_snake in oa["json"]:
                json = oa["json"][oa_snake]
                # Without Go info, assume strings are plain `omitempty` fields and
                # numbers/bools are pointers (an explicit zero is then kept).
                omit_zero = oa["optional"].get(oa_snake, True) and f["value"] in ("string", "bytes")
                omit_zero = omit_zero or json in GO_PLAIN_OMITEMPTY.get(m["full"], ())
            elif oa and f["value"] == "message" and m["special"] == "None" and inlined(oa, pb[f["target"]]):
                json = ""
                flags.append("INLINE")
                omit_zero = False
                warn(f"{m['full']}.{f['snake']}: assumed inline (absent from k8s-openapi)")
            else:
                json = camel(f["snake"])
                omit_zero = f["value"] in ("string", "bytes")
                if m["special"] == "None":
                    warn(f"{m['full']}.{f['snake']}: no JSON name source, using {json}")
            if omit_zero and f["card"] == "one" and f["value"] != "message":
                flags.append("OMIT_ZERO")
            m["fields"].append({**f, "json": json, "flags": flags})
    return out


def reachable(msgs, roots):
    seen, stack = set(), list(roots)
    while stack:
        k = stack.pop()
        if k in seen:
            continue
        seen.add(k)
        for f in msgs[k]["fields"]:
            if f["target"]:
                if f["target"] not in msgs:
                    raise SystemExit(f"{k}.{f['snake']}: unknown message {f['target']}")
                stack.append(f["target"])
    return seen


def kinds(msgs, served):
    """[(apiVersion, kind, message key)] for top-level objects of the served group versions."""
    object_meta = "apimachinery.pkg.apis.meta.v1.ObjectMeta"
    out = []
    for key, m in msgs.items():
        gv = group_version(m["pb"]["module"])
        if not gv or not served(*gv):
            continue
        meta = next((f for f in m["fields"] if f["snake"] == "metadata"), None)
        # Templates embed ObjectMeta too but are never sent on their own.
        template = re.search(r"Template(Spec)?$", m["pb"]["name"]) and m["pb"]["name"] != "PodTemplate"
        if meta and meta["target"] == object_meta and not template:
            group, version = gv
            api_version = f"{group}/{version}" if group else version
            out.append((api_version, m["full"].rsplit(".", 1)[1], key))
    for k in META_KINDS:
        out.append(("", k, "apimachinery.pkg.apis.meta.v1." + k))
    return sorted(out)


def served_default(group, version):
    # Every GA version: the server may add kinds of these groups at any time, and the
    # schema of a GA version only grows.
    return re.fullmatch(r"v\d+", version) is not None


def render(msgs, kind_list, sources):
    keys = sorted(reachable(msgs, [k for _, _, k in kind_list]), key=lambda k: msgs[k]["full"])
    index = {k: i for i, k in enumerate(keys)}

    def ty(value, target):
        return f"Msg({index[target]})" if value == "message" else SCALARS[value]

    lines = [
        "//! Generated by `gen/gen_table.py` (see `gen/README.md`); do not edit by hand.",
        f"//! Sources: {sources}.",
        "",
        "use super::message::{f, Card::*, Message, Special, Ty::*, INLINE, OMIT_ZERO};",
        "",
        "#[rustfmt::skip]",
        f"pub(crate) static MESSAGES: [Message; {len(keys)}] = [",
    ]
    for k in keys:
        m = msgs[k]
        lines.append(f'    Message {{ name: "{m["full"]}", special: Special::{m["special"]}, fields: &[')
        for fl in sorted(m["fields"], key=lambda x: x["tag"]):
            t = ty(fl["value"], fl["target"])
            card = {"one": "One", "rep": "Rep", "map": f"Map({t})"}[fl["card"]]
            if fl["card"] == "map":
                t = "Str"  # the key; every Kubernetes map is keyed by string
            flags = " | ".join(fl["flags"]) or "0"
            lines.append(f'        f({fl["tag"]}, "{fl["json"]}", {t}, {card}, {flags}),')
        lines.append("    ] },")
    lines.append("];")
    lines.append("")
    lines.append("/// (apiVersion, kind, index into `MESSAGES`), sorted; an empty apiVersion matches any.")
    lines.append("#[rustfmt::skip]")
    lines.append(f"pub(crate) static KINDS: [(&str, &str, u16); {len(kind_list)}] = [")
    for av, kind, k in kind_list:
        lines.append(f'    ("{av}", "{kind}", {index[k]}),')
    lines.append("];")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--k8s-pb", default=None)
    ap.add_argument("--k8s-openapi", default=None)
    ap.add_argument("--kubectl", default="/usr/bin/kubectl")
    ap.add_argument("-o", "--output", default=os.path.join(HERE, "..", "table.rs"))
    ap.add_argument("-v", "--verbose", action="store_true", help="print every fallback decision")
    args = ap.parse_args()
    pb_root = args.k8s_pb or os.path.join(latest("k8s-pb-0.9.*"), "src")
    oa_root = args.k8s_openapi or latest("k8s-openapi-0.29.*")
    warnings = []
    pb = parse_k8s_pb(pb_root)
    openapi = parse_k8s_openapi(oa_root)
    go = gotypes.api_fields(args.kubectl)
    msgs = build(pb, openapi, go, warnings.append)
    kind_list = kinds(msgs, served_default)
    version = os.popen(f"{args.kubectl} version --client 2>/dev/null").read().split("\n")[0].replace("Client Version:", "").strip()
    sources = f"{os.path.basename(os.path.dirname(pb_root))}, {os.path.basename(oa_root)}, kubectl {version}"
    with open(args.output, "w") as out:
        out.write(render(msgs, kind_list, sources))
    used = reachable(msgs, [k for _, _, k in kind_list])
    shown = [w for w in warnings if args.verbose or w.split(".")[0] and any(w.startswith(msgs[k]["full"] + ".") for k in used)]
    for w in shown:
        print("note:", w, file=sys.stderr)
    print(f"{len(used)} messages, {len(kind_list)} kinds -> {os.path.normpath(args.output)}", file=sys.stderr)


if __name__ == "__main__":
    main()
