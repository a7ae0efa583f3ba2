#!/usr/bin/env python3
"""Checks every #include under src/ and include/ouro/ against the layer table (cmake/OuroLayers.cmake).

A file's layer is its directory (src/<dir>/...) or, for include/ouro/<h>, the layer that lists <h>
under HEADERS. A quoted include "<dir>/<file>" of a src directory is allowed when <dir> belongs to
the file's own layer, or to a layer it uses (closure) that EXPORTS its headers; "ouro/<h>" when <h>
is public in the file's own layer or a layer it uses. Prints each violation as file:line and exits 1.
README.md's architecture table must list the same public headers and uses per layer.
`--self-test` proves the check can fail: it feeds a wrong-way include per layer and expects a report.
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
# Outside the layered engine: the emulator and the kernels (device code) have their own rules.
SKIP_DIRS = {"simt"}
KERNEL_HEADERS = {"cuda.h", "ptx.h", "ptx_sm90.h", "ptx_sm90_wgmma.inc"}


def load_table():
    text = (ROOT / "cmake/OuroLayers.cmake").read_text()
    layers = {}
    for m in re.finditer(r"^ouro_layer\(([^)]*)\)", text, re.M):
        words = m.group(1).split()
        name, key, entry = words[0], None, {"dirs": [], "headers": [], "uses": [], "exports": False}
        for w in words[1:]:
            if w in ("DIRS", "HEADERS", "USES"):
                key = w.lower()
            elif w == "EXPORTS":
                entry["exports"] = True
                key = None
            else:
                entry[key].append(w)
        layers[name] = entry
    return layers


def closure(layers, name):
    seen, todo = set(), list(layers[name]["uses"])
    while todo:
        u = todo.pop()
        if u not in seen:
            seen.add(u)
            todo.extend(layers[u]["uses"])
    return seen


def allowed(layers):
    """layer -> (src dirs it may include, public headers it may include)."""
    out = {}
    for name, e in layers.items():
        dirs, headers = set(e["dirs"]), set(e["headers"])
        for u in closure(layers, name):
            headers |= set(layers[u]["headers"])
            if layers[u]["exports"]:
                dirs |= set(layers[u]["dirs"])
        if name == "device" or "device" in closure(layers, name):  # the kernels, and those who launch them
            dirs.add("kernels")
            headers |= KERNEL_HEADERS | {"simt"}
        out[name] = (dirs, headers)
    return out


def owner_maps(layers):
    dir_owner = {d: n for n, e in layers.items() for d in e["dirs"]}
    header_owner = {h: n for n, e in layers.items() for h in e["headers"]}
    return dir_owner, header_owner


INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]([^">]+)[">]')


def violations_in(path_rel, text, layers, ok, dir_owner, header_owner):
    parts = pathlib.PurePosixPath(path_rel).parts
    if parts[0] == "src":
        layer = dir_owner.get(parts[1])
    elif parts[0] == "include" and len(parts) == 3:
        layer = header_owner.get(parts[2])
    else:
        layer = None
    if layer is None:
        return []
    dirs, headers = ok[layer]
    bad = []
    for n, line in enumerate(text.splitlines(), 1):
        m = INCLUDE.match(line)
        if not m:
            continue
        inc = pathlib.PurePosixPath(m.group(1))
        top = inc.parts[0]
        if top in ("src", "..") or m.group(1).startswith("./"):
            bad.append(f"{path_rel}:{n}: #include \"{inc}\": write includes as <dir>/<file> from src/ or ouro/<file>")
        elif top == "ouro":
            h = inc.parts[1]
            if h not in headers and (h in header_owner or h in KERNEL_HEADERS or h == "simt"):
                who = header_owner.get(h, "kernels")
                bad.append(f"{path_rel}:{n}: layer '{layer}' includes {inc} (layer '{who}', which it does not use)")
        elif top in dir_owner or top == "kernels":
            if top not in dirs:
                who = dir_owner.get(top, "kernels")
                why = ("whose src headers are private" if who in closure(layers, layer)
                       else "which it does not use")
                bad.append(f"{path_rel}:{n}: layer '{layer}' includes {inc} (layer '{who}', {why})")
    return bad


def check_tree(layers):
    ok = allowed(layers)
    dir_owner, header_owner = owner_maps(layers)
    bad = []
    unknown = []
    for p in sorted((ROOT / "src").iterdir()):
        if p.is_dir() and p.name not in dir_owner and p.name not in SKIP_DIRS:
            unknown.append(f"src/{p.name}/: a directory no layer lists (cmake/OuroLayers.cmake)")
    for h in sorted((ROOT / "include/ouro").glob("*.h")):
        if h.name not in header_owner and h.name not in KERNEL_HEADERS:
            unknown.append(f"include/ouro/{h.name}: a public header no layer lists (cmake/OuroLayers.cmake)")
    files = [f for f in (ROOT / "src").rglob("*") if f.suffix in (".h", ".cpp", ".cu", ".cuh", ".inc")]
    files += list((ROOT / "include/ouro").glob("*.h"))
    for f in sorted(files):
        rel = f.relative_to(ROOT).as_posix()
        if rel.split("/")[1] in SKIP_DIRS:
            continue
        bad += violations_in(rel, f.read_text(errors="replace"), layers, ok, dir_owner, header_owner)
    return unknown + bad


def readme_rows():
    """The README's layer table: layer -> (public headers, may-include layers)."""
    rows = {}
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Architecture"):]
    section = section[:section.index("\n## ", 5)]
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or cells[0] in ("layer", "") or set(cells[0]) <= set("-"):
            continue
        headers = sorted(re.findall(r"`([\w.]+\.h)`", cells[2]))
        uses = sorted(u.strip() for u in cells[3].split(",") if u.strip() not in ("", "—"))
        rows[cells[0]] = (headers, uses)
    return rows


def check_readme(layers):
    """The README's architecture table must say what cmake/OuroLayers.cmake says."""
    rows, bad = readme_rows(), []
    for name, e in layers.items():
        if name not in rows:
            bad.append(f"README.md: the architecture table has no row for layer '{name}'")
            continue
        headers, uses = rows.pop(name)
        if headers != sorted(e["headers"]):
            bad.append(f"README.md: layer '{name}' lists public headers {headers}, the table {sorted(e['headers'])}")
        if uses != sorted(e["uses"]):
            bad.append(f"README.md: layer '{name}' may include {uses}, the table says {sorted(e['uses'])}")
    bad += [f"README.md: a row for '{n}', which is no layer of cmake/OuroLayers.cmake" for n in rows]
    return bad


def self_test(layers):
    ok = allowed(layers)
    dir_owner, header_owner = owner_maps(layers)
    order = list(layers)
    failures = []
    for i, name in enumerate(order):
        src_dir = layers[name]["dirs"][0]
        # A layer above it that it does not use: its first directory, and a public header if any.
        above = [n for n in order[i + 1:] if n not in closure(layers, name)]
        if not above:
            continue
        up = above[-1]
        probe = f'#include "{layers[up]["dirs"][0]}/anything.h"\n'
        if not violations_in(f"src/{src_dir}/probe.cpp", probe, layers, ok, dir_owner, header_owner):
            failures.append(f"{name}: an include of layer '{up}' passed")
    if violations_in("src/model/probe.cpp", '#include "cpu/cpu_ops.h"\n', layers, ok, dir_owner, header_owner) == []:
        failures.append("model: an include of the ops layer's private src/cpu passed")
    if violations_in("src/common/probe.cpp", '#include "ouro/config.h"\n', layers, ok, dir_owner, header_owner) == []:
        failures.append("common: an include of ouro/config.h passed")
    changed = {n: dict(e, uses=e["uses"] + ["loop"]) for n, e in layers.items()}
    if not check_readme(changed):
        failures.append("README: a layer table that differs from the README's passed")
    for f in failures:
        print("self-test:", f)
    print("self-test:", "FAILED" if failures else f"ok ({len(order)} layers probed)")
    return 1 if failures else 0


def main():
    layers = load_table()
    if "--self-test" in sys.argv:
        return self_test(layers)
    bad = check_tree(layers) + check_readme(layers)
    for b in bad:
        print(b)
    if bad:
        print(f"{len(bad)} problem(s) against the layer table (cmake/OuroLayers.cmake)")
        return 1
    print(f"layers: every include under src/ and include/ouro/ follows cmake/OuroLayers.cmake ({len(layers)} layers), "
          "and README.md's architecture table says the same")
    return 0


if __name__ == "__main__":
    sys.exit(main())
