#!/usr/bin/env python3
"""Checks docker/Dockerfile against the repository, without a Docker engine.

A Dockerfile is only really tested by building it, which CI cannot do (no Docker, no GPU); what
breaks it silently is the repository changing under it. So this checks what the repository knows:

  paths   every file the Dockerfile COPYs from the build context exists and is not excluded by
          .dockerignore; every repository script a RUN executes exists and was COPYed into the
          image (at the path the RUN uses) before that RUN, in the same stage
  cmake   every -D option given to cmake is an option or cache variable that the CMake files
          define (option, set(... CACHE ...), find_*), with a value among its STRINGS or a
          boolean where it is one; the image's required settings (Release, OURO_CUDA=ON,
          OURO_NATIVE=OFF) are there
  arch    OURO_CUDA_ARCHITECTURES is given, and equals both the CMake default and the sm_XX
          architectures README.md promises for the cuda device
  base    every nvidia/cuda base image is pinned to a full x.y.z version (and, optionally, by a
          well-formed @sha256 digest: all of them or none), and all stages use the same CUDA
          version and OS
  context .dockerignore leaves out local builds, the tools venv, data and runs
  apt     no package is pinned to a version (the archive drops old versions within weeks); the
          runtime package list leaves out the runtime base's packages (runtime-packages.sh --base)
  profile a stage named 'profile' installs Nsight Compute and Nsight Systems, runs ncu and nsys,
          and puts tools/profile.sh on PATH; the last stage (the default target) is 'runtime'
  entry   every target stage built on an nvidia/cuda image resets its entrypoint (ENTRYPOINT []),
          so NVIDIA's banner never reaches stdout (`ouro eval --json > out.json`)
  docs    docs/docker.md and docs/profiling.md agree with the Dockerfile: --target names a stage,
          --build-arg an ARG, -f a file, /workspace mounts a volume; docker.md's stage table lists
          the stages and their bases, its Open MPI / UCX table the ENV values; a profiler command
          that waits for cudaProfilerStart runs `ouro train --profile-steps`

    tools/check_dockerfile.py [--dockerfile docker/Dockerfile] [--root .]
    tools/check_dockerfile.py --self-test   # broken variants of the Dockerfile must each fail

Problems are printed as FILE:LINE: message; the exit status is 1 when there is any.
"""
import argparse
import fnmatch
import json
import os
import posixpath
import re
import shlex
import sys
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# What the image must be built with, and why (printed when missing).
REQUIRED_CMAKE = {
    "CMAKE_BUILD_TYPE": ("Release", "the image is for training runs"),
    "OURO_CUDA": ("ON", "AUTO would build a CPU-only ouro without a word if nvcc went missing"),
    "OURO_NATIVE": ("OFF", "the image runs on other CPUs than the one that built it"),
}
BUILD_TYPES = {"Debug", "Release", "RelWithDebInfo", "MinSizeRel"}
BOOLS = {"ON", "OFF", "TRUE", "FALSE", "YES", "NO", "Y", "N", "1", "0"}
SHELL_SEPARATORS = {"&&", "||", ";", "|", "&", ";;", "(", ")"}
SHELL_KEYWORDS = {"if", "then", "else", "elif", "do", "while", "until", "!", "{", "}", "exec", "time"}
INTERPRETERS = {"bash", "sh", "python", "python3"}


@dataclass
class Instruction:
    line: int                 # first physical line
    keyword: str              # upper case
    args: str                 # the arguments, continuation lines joined
    lines: list = field(default_factory=list)  # (line number, text) of each physical line

    def line_of(self, needle):
        """The physical line holding needle (the instruction's first line when none does)."""
        for number, text in self.lines:
            if needle in text:
                return number
        return self.line


@dataclass
class Problem:
    line: int
    message: str
    file: str = None  # None: the Dockerfile


# ---- Dockerfile parsing --------------------------------------------------------------------

def parse_dockerfile(text):
    """Instructions with their line numbers; comment lines inside a continuation are dropped,
    as Docker drops them."""
    instructions, current = [], None
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if current is None:
            if not stripped or stripped.startswith("#"):
                continue
            keyword, _, rest = stripped.partition(" ")
            current = Instruction(number, keyword.upper(), "", [])
            body = rest
        else:
            if not stripped or stripped.startswith("#"):
                continue
            body = raw
        current.lines.append((number, raw))
        if body.rstrip().endswith("\\"):
            current.args += body.rstrip()[:-1] + " "
            continue
        current.args = (current.args + body).strip()
        instructions.append(current)
        current = None
    if current is not None:
        current.args = current.args.strip()
        instructions.append(current)
    return instructions


def split_flags(args):
    """COPY/FROM arguments: leading --flag=value pairs, then the rest (JSON or shell form)."""
    flags, words = {}, args.split()
    while words and words[0].startswith("--"):
        name, _, value = words.pop(0)[2:].partition("=")
        flags[name] = value
    return flags, " ".join(words)


def words_of(rest):
    if rest.startswith("["):
        try:
            return [str(w) for w in json.loads(rest)]
        except json.JSONDecodeError:
            pass
    return shlex.split(rest)


def shell_commands(script):
    """The simple commands of a shell script, each a list of words (redirections removed)."""
    lexer = shlex.shlex(script, posix=True, punctuation_chars=";&|()<>")
    lexer.whitespace_split = True
    commands, words, skip_next = [], [], False
    for token in lexer:
        if skip_next:
            skip_next = False
            continue
        if token in SHELL_SEPARATORS:
            if words:
                commands.append(words)
            words = []
        elif set(token) <= set("<>&") or re.fullmatch(r"\d?[<>]+&?", token):
            skip_next = not token.endswith("&")  # "> file" names a file; ">&2" does not
        else:
            words.append(token)
    if words:
        commands.append(words)
    return commands


def executed_path(words):
    """The repository-relative script a command runs (tools/x.sh, bash tools/x.sh), or None."""
    while words and (words[0] in SHELL_KEYWORDS or re.fullmatch(r"[A-Za-z_]\w*=.*", words[0])):
        words = words[1:]
    if not words:
        return None
    target = words[0]
    if posixpath.basename(target) in INTERPRETERS:
        rest = [w for w in words[1:] if not w.startswith("-")]
        if not rest:
            return None
        target = rest[0]
    if target.startswith(("/", "$", "~", "-")) or "/" not in target or "$" in target:
        return None
    return posixpath.normpath(target)


# ---- CMake parsing ---------------------------------------------------------------------------

@dataclass
class CacheVar:
    name: str
    kind: str        # BOOL (option), STRING, PATH, FILEPATH, ...
    default: str
    where: str       # file:line
    strings: list = None


def strip_cmake_comments(text):
    out, quoted = [], False
    for line in text.splitlines():
        kept = []
        for i, ch in enumerate(line):
            if ch == '"' and (i == 0 or line[i - 1] != "\\"):
                quoted = not quoted
            if ch == "#" and not quoted:
                break
            kept.append(ch)
        out.append("".join(kept))
    return "\n".join(out)


CMAKE_ARG = re.compile(r'"(?:\\.|[^"\\])*"|[^\s()"]+')
CMAKE_CALL = re.compile(r"\b(option|set|set_property|find_path|find_library|find_program|find_file)\s*\(",
                        re.IGNORECASE)


def cmake_calls(text):
    """(command, [args], line) for the commands that define cache variables."""
    for m in CMAKE_CALL.finditer(text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        body = text[m.end():i - 1]
        args = [a[1:-1] if a.startswith('"') else a for a in CMAKE_ARG.findall(body)]
        yield m.group(1).lower(), args, text.count("\n", 0, m.start()) + 1


def cmake_files(root):
    skip = re.compile(r"^(build.*|\.venv|\.git|runs|data|__pycache__)$")
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not skip.match(d))
        for name in sorted(filenames):
            if name == "CMakeLists.txt" or name.endswith(".cmake"):
                yield os.path.join(dirpath, name)


def cache_variables(root):
    found = {}
    for path in cmake_files(root):
        rel = os.path.relpath(path, root)
        with open(path, encoding="utf-8") as f:
            text = strip_cmake_comments(f.read())
        pending_strings = []
        for command, args, line in cmake_calls(text):
            where = f"{rel}:{line}"
            if command == "option" and args:
                default = args[2] if len(args) > 2 else "OFF"
                found.setdefault(args[0], CacheVar(args[0], "BOOL", default, where))
            elif command == "set" and "CACHE" in args:
                at = args.index("CACHE")
                kind = args[at + 1] if len(args) > at + 1 else "STRING"
                found.setdefault(args[0], CacheVar(args[0], kind, ";".join(args[1:at]), where))
            elif command.startswith("find_") and args:
                kind = "FILEPATH" if command != "find_path" else "PATH"
                found.setdefault(args[0], CacheVar(args[0], kind, "", where))
            elif (command == "set_property" and len(args) > 4 and args[0] == "CACHE"
                  and args[2] == "PROPERTY" and args[3] == "STRINGS"):
                pending_strings.append((args[1], args[4:]))
        for name, strings in pending_strings:
            if name in found:
                found[name].strings = strings
    return found


# ---- .dockerignore ---------------------------------------------------------------------------

def dockerignore_patterns(root):
    path = os.path.join(root, ".dockerignore")
    if not os.path.exists(path):
        return []
    patterns = []
    with open(path, encoding="utf-8") as f:
        for raw in f:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            pattern = posixpath.normpath(line.lstrip("!").strip("/"))
            patterns.append((negate, pattern))
    return patterns


def ignored(path, patterns):
    """Whether Docker leaves path (or a directory above it) out of the build context."""
    parts = posixpath.normpath(path).split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    result = False
    for negate, pattern in patterns:
        if any(fnmatch.fnmatchcase(p, pattern) for p in prefixes):
            result = not negate
    return result


# ---- the checks ------------------------------------------------------------------------------

# What the build context must not carry, and why.
CONTEXT_EXCLUDED = {
    "build": "local build directories (build*/): large, and built for another system",
    "build-cuda/ouro": "local build directories (build*/): large, and built for another system",
    ".venv": "the local tools venv: COPY . . would overwrite the one tools/setup.sh made in the image",
    "runs": "run output: large, and mounted as a volume instead",
    "data": "training data: large, and mounted as a volume instead",
}


def check_dockerignore(root):
    patterns = dockerignore_patterns(root)
    return [Problem(0, f"does not leave out {path}: {why}", ".dockerignore")
            for path, why in CONTEXT_EXCLUDED.items() if not ignored(path, patterns)] + \
           [Problem(0, f"leaves out {path}, which the image needs", ".dockerignore")
            for path in ("tools/setup.sh", "docker/runtime-packages.sh", "configs", "src", "CMakeLists.txt")
            if ignored(path, patterns)]

def resolve(workdir, path):
    return posixpath.normpath(path if path.startswith("/") else posixpath.join(workdir, path))


def check_stages_and_paths(instructions, root):
    problems = []
    patterns = dockerignore_patterns(root)
    stages, copies, workdir = [], [], "/"
    for ins in instructions:
        if ins.keyword == "FROM":
            _, rest = split_flags(ins.args)
            words = rest.split()
            stages.append(words[2] if len(words) >= 3 and words[1].upper() == "AS" else str(len(stages)))
            copies, workdir = [], "/"
        elif ins.keyword == "WORKDIR":
            workdir = resolve(workdir, ins.args.strip())
        elif ins.keyword in ("COPY", "ADD"):
            flags, rest = split_flags(ins.args)
            words = words_of(rest)
            if len(words) < 2:
                problems.append(Problem(ins.line, f"{ins.keyword} needs a source and a destination"))
                continue
            sources, dest = words[:-1], words[-1]
            if "from" in flags:
                if flags["from"] not in stages[:-1] and not re.search(r"[:/]", flags["from"]):
                    problems.append(Problem(ins.line, f"{ins.keyword} --from={flags['from']}: no earlier stage "
                                                      f"has that name (stages: {', '.join(stages[:-1]) or 'none'})"))
                continue
            dest_abs = resolve(workdir, dest)
            for src in sources:
                rel = posixpath.normpath(src)
                matches = [rel] if not any(c in rel for c in "*?[") else \
                    [p for p in (os.path.relpath(x, root) for x in _glob(root, rel))]
                if not matches or not all(os.path.exists(os.path.join(root, m)) for m in matches):
                    problems.append(Problem(ins.line, f"{ins.keyword} {src}: no such file or directory in the "
                                                      f"repository (the build context is the repository root)"))
                    continue
                if rel != "." and ignored(rel, patterns):
                    problems.append(Problem(ins.line, f"{ins.keyword} {src}: .dockerignore leaves it out of "
                                                      f"the build context"))
                    continue
                for m in matches:
                    is_dir = os.path.isdir(os.path.join(root, m))
                    if is_dir:
                        target = dest_abs
                    elif len(sources) > 1 or dest.endswith("/"):
                        target = posixpath.join(dest_abs, posixpath.basename(m))
                    else:
                        target = dest_abs
                    copies.append((target, m, is_dir))
        elif ins.keyword == "RUN":
            _, rest = split_flags(ins.args)
            script = " ".join(words_of(rest)) if rest.startswith("[") else rest
            for words in shell_commands(script):
                path = executed_path(words)
                if path is None:
                    continue
                line = ins.line_of(path)
                if not os.path.isfile(os.path.join(root, path)):
                    problems.append(Problem(line, f"RUN runs {path}, which is not a file in the repository"))
                    continue
                in_image = resolve(workdir, path)
                if not any(_covers(target, src, is_dir, in_image, path) for target, src, is_dir in copies):
                    problems.append(Problem(line, f"RUN runs {path} (at {in_image}), but no COPY before it in "
                                                  f"stage '{stages[-1] if stages else '?'}' puts the "
                                                  f"repository's {path} there"))
    return problems


def _glob(root, pattern):
    import glob
    return glob.glob(os.path.join(root, pattern))


def _covers(target, src, is_dir, in_image, repo_path):
    if is_dir:
        prefix = target.rstrip("/") + "/"
        if not in_image.startswith(prefix):
            return False
        inner = in_image[len(prefix):]
        return posixpath.normpath(posixpath.join(src, inner)) == repo_path
    return target == in_image and src == repo_path


def cmake_options(instructions):
    """(instruction, name, value) for every -D given to a cmake configure in a RUN."""
    found = []
    for ins in instructions:
        if ins.keyword != "RUN":
            continue
        _, rest = split_flags(ins.args)
        for words in shell_commands(rest):
            if not words or posixpath.basename(words[0]) != "cmake" or "--build" in words:
                continue
            i = 1
            while i < len(words):
                w = words[i]
                if w == "-D" and i + 1 < len(words):
                    i += 1
                    w = "-D" + words[i]
                if w.startswith("-D"):
                    name, _, value = w[2:].partition("=")
                    found.append((ins, name.split(":")[0], value))
                i += 1
    return found


def check_cmake(instructions, root):
    problems = []
    known = cache_variables(root)
    options = cmake_options(instructions)
    if not options:
        return [Problem(1, "no cmake configure with -D options found in any RUN: the image must "
                           "configure the CUDA build explicitly")], options
    given = {}
    for ins, name, value in options:
        line = next((ins.line_of(n) for n in (f"-D{name}=", f"-D{name}:", f"-D {name}=", f"-D{name}", name)
                     if any(n in t for _, t in ins.lines)), ins.line)
        given[name] = (value, line)
        if name == "CMAKE_CUDA_ARCHITECTURES":
            problems.append(Problem(line, "-DCMAKE_CUDA_ARCHITECTURES is overwritten by cmake/OuroCuda.cmake: "
                                          "set OURO_CUDA_ARCHITECTURES instead"))
            continue
        if name == "CMAKE_BUILD_TYPE" and value not in BUILD_TYPES:
            problems.append(Problem(line, f"-DCMAKE_BUILD_TYPE={value}: not one of {', '.join(sorted(BUILD_TYPES))}"))
            continue
        if name.startswith("CMAKE_"):
            continue  # CMake's own variables
        var = known.get(name)
        if var is None:
            close = [k for k in known if k.startswith(name[:6])]
            hint = f" (options defined: {', '.join(sorted(close))})" if close else ""
            problems.append(Problem(line, f"-D{name}: no option or cache variable of that name in "
                                          f"CMakeLists.txt or cmake/*.cmake{hint}"))
            continue
        if "$" in value:
            continue  # set from a build ARG: not knowable here
        if var.strings is not None and value not in var.strings:
            allowed = ", ".join(repr(s) for s in var.strings)
            problems.append(Problem(line, f"-D{name}={value}: not one of its values {allowed} ({var.where})"))
        elif var.kind == "BOOL" and value.upper() not in BOOLS:
            problems.append(Problem(line, f"-D{name}={value}: {name} is a boolean option ({var.where})"))
    for name, (value, why) in REQUIRED_CMAKE.items():
        if name not in given:
            problems.append(Problem(options[0][0].line, f"the cmake configure does not set -D{name}={value}: {why}"))
        elif given[name][0].upper() != value.upper():
            problems.append(Problem(given[name][1], f"-D{name}={given[name][0]}: the image needs {value}: {why}"))
    return problems, options


def arch_set(value):
    return {a.strip() for a in value.split(";") if a.strip()}


def check_architectures(options, root):
    problems = []
    given = [(ins, value) for ins, name, value in options if name == "OURO_CUDA_ARCHITECTURES"]
    if not given:
        line = options[0][0].line if options else 1
        return [Problem(line, "-DOURO_CUDA_ARCHITECTURES is not given: the image must name the GPU "
                              "architectures it supports")]
    ins, value = given[-1]
    line = ins.line_of("OURO_CUDA_ARCHITECTURES")
    image = arch_set(value)
    default = cache_variables(root).get("OURO_CUDA_ARCHITECTURES")
    if default is not None and arch_set(default.default) != image:
        problems.append(Problem(line, f"OURO_CUDA_ARCHITECTURES={value} differs from the build's default "
                                      f"'{default.default}' ({default.where})"))
    promised = set()
    readme = os.path.join(root, "README.md")
    if os.path.exists(readme):
        with open(readme, encoding="utf-8") as f:
            for text in f:
                if "cuda" in text.lower():
                    promised |= set(re.findall(r"\bsm_(\d+[a-z]?)\b", text))
    if not promised:
        problems.append(Problem(line, "README.md names no sm_XX architecture for the cuda device: "
                                      "nothing to check the image's architectures against"))
    elif promised != image:
        problems.append(Problem(line, f"OURO_CUDA_ARCHITECTURES={value} but README.md promises "
                                      f"{', '.join('sm_' + a for a in sorted(promised))}"))
    return problems


CUDA_TAG = re.compile(r"^(?P<version>\d+\.\d+\.\d+)-(?P<flavour>[a-z0-9-]+)-(?P<os>[a-z]+\d+\.\d+)$")


DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def check_base_images(instructions):
    problems, seen, stages, digests = [], [], set(), []
    for ins in instructions:
        if ins.keyword != "FROM":
            continue
        _, rest = split_flags(ins.args)
        words = rest.split()
        image = words[0] if words else ""
        if len(words) >= 3 and words[1].upper() == "AS":
            stages.add(words[2])
        if image in stages or "$" in image:
            continue
        name, _, digest = image.partition("@")
        digests.append((ins.line, image, digest))
        if digest and not DIGEST.fullmatch(digest):
            problems.append(Problem(ins.line, f"FROM {image}: '{digest}' is not a sha256 digest "
                                              f"(sha256: and 64 lower-case hex digits)"))
        repo, _, tag = name.rpartition(":") if ":" in name.split("/")[-1] else (name, "", "")
        if not tag or tag == "latest":
            problems.append(Problem(ins.line, f"FROM {image}: pin a version tag (not latest)"))
            continue
        if repo.split("/")[-2:] == ["nvidia", "cuda"] or repo.endswith("nvidia/cuda"):
            m = CUDA_TAG.match(tag)
            if not m:
                problems.append(Problem(ins.line, f"FROM {image}: pin the full CUDA version "
                                                  f"(like 13.0.2-cudnn-devel-ubuntu24.04), not '{tag}'"))
                continue
            seen.append((ins.line, m.group("version"), m.group("os"), tag))
    for line, version, os_name, tag in seen[1:]:
        if (version, os_name) != seen[0][1:3]:
            problems.append(Problem(line, f"this stage's base {tag} differs from the first stage's "
                                          f"{seen[0][3]}: build and runtime must share CUDA version and OS"))
    if any(d for _, _, d in digests):
        for line, image, digest in digests:
            if not digest:
                problems.append(Problem(line, f"FROM {image}: another FROM is pinned by digest but this one "
                                              f"is not: pin both or neither (docs/docker.md)"))
    return problems


# ---- stages: apt pins, the profile target, entrypoints -----------------------------------------

@dataclass
class Stage:
    name: str
    base: str                  # an image reference, or an earlier stage's name
    line: int
    instructions: list
    parent: "Stage" = None     # the earlier stage it is built FROM, if any


def stages_of(instructions):
    stages, by_name, current = [], {}, None
    for ins in instructions:
        if ins.keyword == "FROM":
            _, rest = split_flags(ins.args)
            words = rest.split()
            base = words[0] if words else ""
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else str(len(stages))
            current = Stage(name, base, ins.line, [], by_name.get(base))
            stages.append(current)
            by_name[name] = current
        elif current is not None:
            current.instructions.append(ins)
    return stages


def lineage(stage):
    """The stages from the one built on an image down to this one."""
    out = []
    while stage is not None:
        out.append(stage)
        stage = stage.parent
    return out[::-1]


def arg_defaults(stage):
    """ARG NAME=default declared in this stage (an ARG does not carry into later stages)."""
    found = {}
    for ins in stage.instructions:
        if ins.keyword == "ARG":
            name, _, value = ins.args.partition("=")
            found[name.strip()] = value.strip().strip('"')
    return found


def expand(word, args):
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), m.group(0)), word)


def run_commands(stage):
    """(instruction, words) of every simple command the stage's RUNs execute."""
    for ins in stage.instructions:
        if ins.keyword != "RUN":
            continue
        _, rest = split_flags(ins.args)
        script = " ".join(words_of(rest)) if rest.startswith("[") else rest
        for words in shell_commands(script):
            yield ins, words


def apt_packages(stage):
    """(instruction, package as written, package with the stage's ARG defaults) per apt install."""
    args = arg_defaults(stage)
    for ins, words in run_commands(stage):
        for i, w in enumerate(words):
            if posixpath.basename(w) in ("apt-get", "apt") and "install" in words[i + 1:]:
                at = words.index("install", i + 1)
                for pkg in words[at + 1:]:
                    if not pkg.startswith("-"):
                        yield ins, pkg, expand(pkg, args)
                break


def check_apt_pins(stages):
    problems = []
    for stage in stages:
        for ins, pkg, value in apt_packages(stage):
            if "=" in value:
                problems.append(Problem(ins.line_of(pkg), f"stage '{stage.name}' pins {value}: apt stops with "
                                        f"\"Version ... was not found\" once the archive updates that package "
                                        f"(weeks); install by name"))
        for ins, words in run_commands(stage):
            path = executed_path(words)
            if path and posixpath.basename(path) == "runtime-packages.sh" and "--check" not in words \
                    and "--base" not in words:
                problems.append(Problem(ins.line_of("runtime-packages.sh"),
                                        "runtime-packages.sh runs without --base: the list would hold the "
                                        "runtime base's own packages (libc6, libcudnn9, libnccl2), and "
                                        "installing those again changes or breaks the base"))
    return problems


DEFAULT_PATH = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]


def env_of(stages):
    """ENV name -> (value, line) over the stages, later ones winning."""
    env = {}
    for stage in stages:
        for ins in stage.instructions:
            if ins.keyword != "ENV":
                continue
            words = shlex.split(ins.args)
            if len(words) == 2 and "=" not in words[0]:
                env[words[0]] = (words[1], ins.line)  # the old "ENV NAME value" form
                continue
            for w in words:
                name, _, value = w.partition("=")
                env[name] = (value, ins.line_of(name + "="))
    return env


def path_dirs(stages):
    value = env_of(stages).get("PATH", ("", 0))[0]
    dirs = [d for d in value.split(":") if d and "$" not in d]
    return dirs + DEFAULT_PATH


def check_profile_stage(stages):
    problems = []
    by_name = {s.name: s for s in stages}
    if stages and stages[-1].name != "runtime":
        problems.append(Problem(stages[-1].line, f"the last stage is '{stages[-1].name}': `docker build` without "
                                                 f"--target builds the last stage, which must be 'runtime' "
                                                 f"(docs/docker.md)"))
    runtime = by_name.get("runtime")
    if runtime is not None:
        for stage in lineage(runtime):
            for ins, _, value in apt_packages(stage):
                if re.search(r"nsight-(compute|systems)", value):
                    problems.append(Problem(ins.line, f"the runtime image installs {value}: the profilers "
                                                      f"belong in the 'profile' stage only"))
    profile = by_name.get("profile")
    if profile is None:
        return problems + [Problem(1, "no stage named 'profile': `docker build --target profile` must give an "
                                      "image with Nsight Compute, Nsight Systems and tools/profile.sh")]
    chain = lineage(profile)
    packages = [value for stage in chain for _, _, value in apt_packages(stage)]
    for tool, pattern, what in (("ncu", r"nsight-compute", "Nsight Compute"),
                                ("nsys", r"nsight-systems", "Nsight Systems")):
        if not any(re.search(pattern, p) for p in packages):
            problems.append(Problem(profile.line, f"the profile stage installs no {what} package (apt names "
                                                  f"matching '{pattern}'; it has: {', '.join(packages) or 'none'})"))
        ran = any(words[:2] == [tool, "--version"] for stage in chain for _, words in run_commands(stage))
        if not ran:
            problems.append(Problem(profile.line, f"the profile stage never runs `{tool} --version`: nothing "
                                                  f"proves {tool} is on PATH and starts"))
    copies = []
    for stage in chain:
        for ins in stage.instructions:
            if ins.keyword == "COPY":
                flags, rest = split_flags(ins.args)
                words = words_of(rest)
                if "from" not in flags and len(words) >= 2 and "tools/profile.sh" in map(posixpath.normpath,
                                                                                        words[:-1]):
                    copies.append((ins, words[-1]))
    if not copies:
        problems.append(Problem(profile.line, "the profile stage does not COPY tools/profile.sh: the profiling "
                                              "wrapper docs/profiling.md describes is not in the image"))
    dirs = path_dirs(chain)
    for ins, dest in copies:
        directory = dest.rstrip("/") if dest.endswith("/") else posixpath.dirname(dest)
        if directory not in dirs:
            problems.append(Problem(ins.line, f"tools/profile.sh goes to {dest}, whose directory is not on the "
                                              f"image's PATH ({':'.join(dirs)})"))
    return problems


NVIDIA_ENTRYPOINT = "/opt/nvidia/nvidia_entrypoint.sh"


def check_entrypoints(stages):
    problems = []
    targets = [s for s in stages if s.name in ("runtime", "profile")]
    if stages and stages[-1] not in targets:
        targets.append(stages[-1])
    for stage in targets:
        chain = lineage(stage)
        if "nvidia/cuda" not in chain[0].base:
            continue
        last = None
        for s in chain:
            for ins in s.instructions:
                if ins.keyword == "ENTRYPOINT":
                    last = ins
        if last is None:
            problems.append(Problem(stage.line, f"stage '{stage.name}' keeps the CUDA image's entrypoint "
                                                f"({NVIDIA_ENTRYPOINT}), which prints a banner to stdout before "
                                                f"every command: `ouro eval --json > out.json` would not be JSON; "
                                                f"set ENTRYPOINT []"))
        elif not last.args.startswith("["):
            problems.append(Problem(last.line, "a shell-form ENTRYPOINT runs under /bin/sh -c and drops CMD and "
                                               "`docker run` arguments: use ENTRYPOINT []"))
        elif "nvidia_entrypoint" in last.args:
            problems.append(Problem(last.line, f"ENTRYPOINT {last.args}: NVIDIA's entrypoint prints a banner to "
                                               f"stdout: use ENTRYPOINT []"))
    return problems


# ---- the docs' commands against the Dockerfile -------------------------------------------------

DOCS = ("docs/docker.md", "docs/profiling.md")


def read_docs(root):
    docs = {}
    for rel in DOCS:
        path = os.path.join(root, rel)
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                docs[rel] = f.read()
    return docs


def doc_lines(text):
    """(line number, text) with backslash continuations joined onto their first line."""
    out, pending, start = [], "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        if not pending:
            start = number
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        out.append((start, pending + raw))
        pending = ""
    if pending:
        out.append((start, pending))
    return out


def markdown_table(text, first_header):
    """Rows (line, [cells]) of the table whose header's first cell is first_header."""
    rows, inside = [], False
    for number, line in enumerate(text.splitlines(), start=1):
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.lstrip().startswith("|") else None
        if cells is None:
            inside = False
            continue
        if not inside:
            inside = cells[0].lower() == first_header
            continue
        if set(cells[0]) <= set("-: "):
            continue
        rows.append((number, cells))
    return rows


def code(cell):
    m = re.fullmatch(r"`([^`]*)`", cell.strip())
    return m.group(1) if m else None


def check_docs(stages, root, docs):
    problems = []
    if not stages:
        return problems
    names = {s.name for s in stages}
    by_name = {s.name: s for s in stages}
    args = {ins.args.partition("=")[0].strip() for s in stages for ins in s.instructions if ins.keyword == "ARG"}
    runtime_chain = lineage(by_name["runtime"]) if "runtime" in by_name else lineage(stages[-1])
    volumes = set()
    for s in runtime_chain:
        for ins in s.instructions:
            if ins.keyword == "VOLUME":
                volumes |= set(words_of(ins.args))
    profile_names = set()
    if "profile" in by_name:
        for s in lineage(by_name["profile"]):
            for ins in s.instructions:
                if ins.keyword == "COPY" and "tools/profile.sh" in ins.args:
                    profile_names.add(posixpath.basename(words_of(split_flags(ins.args)[1])[-1]))
    for rel, text in docs.items():
        for line, cmd in doc_lines(text):
            for target in re.findall(r"--target[= ]([\w.-]+)", cmd):
                if target not in names:
                    problems.append(Problem(line, f"--target {target}: docker/Dockerfile has no such stage "
                                                  f"(stages: {', '.join(s.name for s in stages)})", rel))
            for arg in re.findall(r"--build-arg[= ]([A-Za-z_]\w*)=", cmd):
                if arg not in args:
                    problems.append(Problem(line, f"--build-arg {arg}: docker/Dockerfile declares no such ARG "
                                                  f"(ARGs: {', '.join(sorted(args))})", rel))
            for dockerfile in re.findall(r"docker (?:buildx )?build\b.*?\s-f[= ](\S+)", cmd):
                if not os.path.isfile(os.path.join(root, dockerfile)):
                    problems.append(Problem(line, f"-f {dockerfile}: no such file in the repository", rel))
            paused = re.search(r"nsys profile .*--capture-range=cudaProfilerApi|ncu .*--profile-from-start[= ]off", cmd)
            if paused and re.search(r"\bouro train\b|/ouro train\b", cmd) and "--profile-steps" not in cmd:
                problems.append(Problem(line, "the profiler waits for cudaProfilerStart, which only `ouro train "
                                              "--profile-steps A:B` calls: without it nothing is captured", rel))
            mounts = re.findall(r"(?:-v|--volume)[= ]\"?[^\s:\"]+:(/workspace/[\w./-]+)", cmd)
            for spec in re.findall(r"--container-mounts=(\S+)", cmd):
                mounts += [m.split(":")[1] for m in spec.split(",") if m.count(":") >= 1]
            for target in mounts:
                target = posixpath.normpath(target)
                if target.startswith("/workspace/") and not any(target == v or target.startswith(v + "/")
                                                                for v in volumes):
                    problems.append(Problem(line, f"mounts {target}, which is none of the image's volumes "
                                                  f"({', '.join(sorted(volumes))})", rel))
        for name in profile_names:
            if name not in text:
                problems.append(Problem(0, f"never names {name}, the profile image's profiling wrapper "
                                           f"(tools/profile.sh as the Dockerfile installs it)", rel))
    docker_md = docs.get("docs/docker.md")
    if docker_md is None:
        return problems + [Problem(0, "missing: the image's documentation", "docs/docker.md")]
    # The stage table: each stage and its base, as the Dockerfile has them.
    rows = markdown_table(docker_md, "stage")
    listed = set()
    for line, cells in rows:
        stage, base = code(cells[0]), code(cells[1]) if len(cells) > 1 else None
        if stage is None:
            continue
        listed.add(stage)
        if stage not in by_name:
            problems.append(Problem(line, f"the stage table lists '{stage}', which docker/Dockerfile does not "
                                          f"have", "docs/docker.md"))
        elif base is not None and base != by_name[stage].base.partition("@")[0]:
            problems.append(Problem(line, f"the stage table says '{stage}' starts from {base}; docker/Dockerfile: "
                                          f"FROM {by_name[stage].base}", "docs/docker.md"))
    for s in stages:
        if s.name not in listed:
            problems.append(Problem(0, f"the stage table (| stage | base | ...) does not list '{s.name}'",
                                    "docs/docker.md"))
    # The Open MPI / UCX settings table against the runtime image's ENV.
    env = {k: v for k, v in env_of(runtime_chain).items() if re.match(r"(OMPI_|UCX_)", k)}
    documented = {}
    for line, cells in markdown_table(docker_md, "variable"):
        name, value = code(cells[0]), code(cells[1]) if len(cells) > 1 else None
        if name:
            documented[name] = value
            if name not in env:
                problems.append(Problem(line, f"documents {name}={value} as the image's setting, but "
                                              f"docker/Dockerfile does not set it", "docs/docker.md"))
            elif env[name][0] != value:
                problems.append(Problem(line, f"documents {name}={value}; docker/Dockerfile sets "
                                              f"{name}={env[name][0]}", "docs/docker.md"))
    for name, (value, line) in env.items():
        if name not in documented:
            problems.append(Problem(line, f"ENV {name}={value} is not in docs/docker.md's table "
                                          f"(| variable | value | why |)"))
    return problems


def check(text, root, docs=None):
    instructions = parse_dockerfile(text)
    problems = check_base_images(instructions)
    problems += check_stages_and_paths(instructions, root)
    cmake_problems, options = check_cmake(instructions, root)
    problems += cmake_problems
    if options:
        problems += check_architectures(options, root)
    problems += check_dockerignore(root)
    stages = stages_of(instructions)
    problems += check_apt_pins(stages)
    problems += check_profile_stage(stages)
    problems += check_entrypoints(stages)
    problems += check_docs(stages, root, docs if docs is not None else read_docs(root))
    return sorted(problems, key=lambda p: (p.file or "", p.line))


# ---- self-test: the checker must fail on broken Dockerfiles ----------------------------------

# (name, text to replace in docker/Dockerfile, replacement, what the failure message must say)
MUTATIONS = [
    ("missing script", "RUN bash tools/setup.sh", "RUN bash tools/setup_missing.sh",
     "tools/setup_missing.sh, which is not a file"),
    ("script run before it is copied", "COPY tools/setup.sh tools/setup.sh\n", "",
     "no COPY before it"),
    ("script copied elsewhere", "COPY tools/setup.sh tools/setup.sh", "COPY tools/setup.sh /opt/setup.sh",
     "no COPY before it"),
    ("misspelt option", "-DOURO_NATIVE=OFF", "-DOURO_NATVE=OFF", "-DOURO_NATVE: no option"),
    ("value outside STRINGS", "-DOURO_CUDA=ON", "-DOURO_CUDA=YES", "-DOURO_CUDA=YES: not one of its values"),
    ("non-boolean option", "-DOURO_SIMT=OFF", "-DOURO_SIMT=maybe", "is a boolean option"),
    ("native build", "-DOURO_NATIVE=OFF", "-DOURO_NATIVE=ON", "the image needs OFF"),
    ("debug build", "-DCMAKE_BUILD_TYPE=Release", "-DCMAKE_BUILD_TYPE=Debug", "the image needs Release"),
    ("wrong architectures", '-DOURO_CUDA_ARCHITECTURES="80;90a"', '-DOURO_CUDA_ARCHITECTURES="80;90"',
     "README.md promises"),
    ("architectures dropped", '-DOURO_CUDA_ARCHITECTURES="80;90a" \\\n', "",
     "OURO_CUDA_ARCHITECTURES is not given"),
    ("CMAKE_CUDA_ARCHITECTURES", '-DOURO_CUDA_ARCHITECTURES="80;90a"', '-DCMAKE_CUDA_ARCHITECTURES="80;90a"',
     "overwritten by cmake/OuroCuda.cmake"),
    ("unpinned base", "nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04", "nvidia/cuda:latest",
     "pin a version tag"),
    ("short CUDA tag", "nvidia/cuda:13.0.2-cudnn-devel-ubuntu24.04", "nvidia/cuda:13.0-cudnn-devel-ubuntu24.04",
     "pin the full CUDA version"),
    ("stages disagree", "nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04", "nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04",
     "must share CUDA version and OS"),
    ("missing COPY source", "COPY --chown=ouro:ouro configs ", "COPY --chown=ouro:ouro config ",
     "COPY config: no such file"),
    ("unknown stage", "COPY --from=build ", "COPY --from=builder ", "no earlier stage"),
    ("runtime script renamed", "bash docker/runtime-packages.sh", "bash docker/runtime_packages.sh",
     "docker/runtime_packages.sh, which is not a file"),
    # apt: versions and the runtime base's packages
    ("pinned package", 'apt-get install -y --no-install-recommends "${NSIGHT_COMPUTE_PACKAGE}"',
     'apt-get install -y --no-install-recommends libc6=2.39-0ubuntu8.4 "${NSIGHT_COMPUTE_PACKAGE}"',
     "pins libc6=2.39-0ubuntu8.4"),
    ("pinned through an ARG", "ARG NSIGHT_SYSTEMS_PACKAGE=cuda-nsight-systems-13-0",
     "ARG NSIGHT_SYSTEMS_PACKAGE=cuda-nsight-systems-13-0=13.0.85-1", "pins cuda-nsight-systems-13-0=13.0.85-1"),
    ("runtime list without --base", "runtime-packages.sh --base /tmp/runtime-base-dpkg ", "runtime-packages.sh ",
     "runs without --base"),
    # digests
    ("malformed digest", "nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04 AS",
     "nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04@sha256:0123abc AS", "is not a sha256 digest"),
    ("one FROM pinned", "nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04 AS",
     "nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04@sha256:" + "0" * 64 + " AS", "pin both or neither"),
    # the profile target
    ("no profile stage", "AS profile\n", "AS profiling\n", "no stage named 'profile'"),
    ("profile without Nsight Compute", "ARG NSIGHT_COMPUTE_PACKAGE=cuda-nsight-compute-13-0",
     "ARG NSIGHT_COMPUTE_PACKAGE=cuda-cupti-13-0", "installs no Nsight Compute package"),
    ("profile without Nsight Systems", "ARG NSIGHT_SYSTEMS_PACKAGE=cuda-nsight-systems-13-0",
     "ARG NSIGHT_SYSTEMS_PACKAGE=cuda-cupti-13-0", "installs no Nsight Systems package"),
    ("ncu never run", "    && ncu --version \\\n", "", "never runs `ncu --version`"),
    ("profile.sh not copied", "COPY tools/profile.sh /opt/ouro/bin/ouro-profile\n", "",
     "does not COPY tools/profile.sh"),
    ("profile.sh off PATH", "COPY tools/profile.sh /opt/ouro/bin/ouro-profile",
     "COPY tools/profile.sh /opt/ouro/share/ouro-profile", "not on the image's PATH"),
    ("default target not runtime", "FROM image AS runtime\n", "FROM image AS release\n",
     "which must be 'runtime'"),
    # the entrypoint
    ("NVIDIA entrypoint kept", "ENTRYPOINT []\n", "", "keeps the CUDA image's entrypoint"),
    ("shell-form entrypoint", "ENTRYPOINT []\n", "ENTRYPOINT ouro\n", "shell-form ENTRYPOINT"),
    ("NVIDIA entrypoint named", "ENTRYPOINT []\n", 'ENTRYPOINT ["/opt/nvidia/nvidia_entrypoint.sh"]\n',
     "NVIDIA's entrypoint prints a banner"),
    # docs against the Dockerfile (the Dockerfile side)
    ("Open MPI setting dropped", "    OMPI_MCA_pml=ob1 \\\n", "", "documents OMPI_MCA_pml=ob1 as the image's setting"),
    ("Open MPI setting undocumented", "    UCX_TLS=^cma \\\n", "    UCX_TLS=^cma \\\n    OMPI_MCA_btl_tcp_if_include=eth0 \\\n",
     "ENV OMPI_MCA_btl_tcp_if_include=eth0 is not in docs/docker.md's table"),
    ("volume moved", 'VOLUME ["/workspace/data", "/workspace/runs"]', 'VOLUME ["/workspace/data", "/workspace/out"]',
     "mounts /workspace/runs, which is none of the image's volumes"),
]

# (name, doc, text to replace (every occurrence), replacement, what the failure message must say):
# the docs drifting from the Dockerfile.
DOC_MUTATIONS = [
    ("unknown --target", "docs/docker.md", "--target profile -t ouro:profile .       #",
     "--target profiler -t ouro:profile .       #", "--target profiler: docker/Dockerfile has no such stage"),
    ("unknown --build-arg", "docs/docker.md", "--build-arg BUILD_JOBS=8", "--build-arg JOBS=8",
     "--build-arg JOBS: docker/Dockerfile declares no such ARG"),
    ("wrong Dockerfile path", "docs/docker.md", "docker build -f docker/Dockerfile -t ouro .",
     "docker build -f Dockerfile -t ouro .", "-f Dockerfile: no such file"),
    ("stage base drifted", "docs/docker.md", "| `build` | `nvidia/cuda:13.0.2-cudnn-devel-ubuntu24.04` |",
     "| `build` | `nvidia/cuda:13.0.1-cudnn-devel-ubuntu24.04` |", "the stage table says 'build' starts from"),
    ("stage missing from the table", "docs/docker.md", "| `profile` | `image` |", "| `profiler` | `image` |",
     "does not list 'profile'"),
    ("Open MPI value drifted", "docs/docker.md", "| `OMPI_MCA_pml` | `ob1` |", "| `OMPI_MCA_pml` | `ucx` |",
     "documents OMPI_MCA_pml=ucx; docker/Dockerfile sets OMPI_MCA_pml=ob1"),
    ("enroot mount to no volume", "docs/docker.md", "/shared/runs:/workspace/runs \\\n  --container-workdir",
     "/shared/runs:/workspace/run \\\n  --container-workdir", "mounts /workspace/run, which is none"),
    ("profiling docs without ouro-profile", "docs/profiling.md", "ouro-profile", "profile-wrapper",
     "never names ouro-profile"),
    ("multi-rank nsys without --profile-steps", "docs/profiling.md",
     "  --profile-steps 10:13 --stop-at 13 --set run.out_dir=runs/profile/run\n",
     "  --stop-at 13 --set run.out_dir=runs/profile/run\n", "without it nothing is captured"),
    ("container nsys without --profile-steps", "docs/docker.md", "--device cuda --profile-steps 10:13 --stop-at 13",
     "--device cuda --stop-at 13", "without it nothing is captured"),
]


def self_test(dockerfile, root):
    with open(dockerfile, encoding="utf-8") as f:
        original = f.read()
    baseline = {p.message for p in check(original, root)}
    failures = 0
    for name, old, new, expected in MUTATIONS:
        if old not in original:
            print(f"FAIL {name}: the Dockerfile no longer contains {old!r}: update the self-test")
            failures += 1
            continue
        broken = original.replace(old, new, 1)
        found = [p for p in check(broken, root) if p.message not in baseline]
        hits = [p for p in found if expected in p.message]
        if hits:
            print(f"ok   {name}: line {hits[0].line}: {hits[0].message}")
        else:
            got = "; ".join(p.message for p in found) or "no new problem"
            print(f"FAIL {name}: expected a problem saying {expected!r}, got: {got}")
            failures += 1
    docs = read_docs(root)
    baseline_docs = {(p.file, p.message) for p in check(original, root, docs)}
    for name, rel, old, new, expected in DOC_MUTATIONS:
        if old not in docs.get(rel, ""):
            print(f"FAIL {name}: {rel} no longer contains {old!r}: update the self-test")
            failures += 1
            continue
        broken = dict(docs, **{rel: docs[rel].replace(old, new)})  # every occurrence
        found = [p for p in check(original, root, broken) if (p.file, p.message) not in baseline_docs]
        hits = [p for p in found if expected in p.message]
        if hits:
            print(f"ok   {name}: {hits[0].file or 'docker/Dockerfile'}:{hits[0].line}: {hits[0].message}")
        else:
            got = "; ".join(p.message for p in found) or "no new problem"
            print(f"FAIL {name}: expected a problem saying {expected!r}, got: {got}")
            failures += 1
    # Parser corner cases on a synthetic Dockerfile: "-D NAME=VALUE" (two words), a comment inside
    # a continuation, an exec-form RUN, a line number that points at the bad option itself.
    synthetic = ("FROM nvidia/cuda:13.0.2-cudnn-devel-ubuntu24.04 AS build\nWORKDIR /src\nCOPY . .\n"
                 "RUN cmake -S . -B b \\\n    -D CMAKE_BUILD_TYPE=Release \\\n"
                 "# a comment inside the continuation\n    -DOURO_CUDA=ON -DOURO_NATIVE=OFF \\\n"
                 "    -DOURO_CUDA_ARCHITECTURES=\"80;90a\" \\\n    -D OURO_BOGUS=1\n"
                 "RUN [\"tools/nope.sh\", \"--x\"]\n")
    found = [p for p in check(synthetic, root, docs={}) if p.file is None]
    want = [(9, "-DOURO_BOGUS: no option"), (10, "tools/nope.sh, which is not a file"),
            (1, "no stage named 'profile'"), (1, "keeps the CUDA image's entrypoint"),
            (1, "which must be 'runtime'")]
    for line, expected in want:
        if any(p.line == line and expected in p.message for p in found):
            print(f"ok   synthetic: line {line}: {expected}")
        else:
            print(f"FAIL synthetic: expected line {line}: {expected!r}; got "
                  + "; ".join(f"{p.line}: {p.message}" for p in found))
            failures += 1
    extra = [p for p in found if not any(p.line == l and e in p.message for l, e in want)]
    if extra:
        print("FAIL synthetic: unexpected problems: " + "; ".join(f"{p.line}: {p.message}" for p in extra))
        failures += 1
    # .dockerignore matching (Docker's rules: root-relative, a directory excludes what is under it).
    patterns = [(False, "build*"), (False, ".venv"), (True, "build-keep")]
    cases = [("build-cuda/ouro", True), (".venv/bin/python", True), ("tools/build.sh", False),
             ("build-keep", False), ("src/data", False)]
    wrong = [(p, w) for p, w in cases if ignored(p, patterns) != w]
    for path, want_ignored in wrong:
        print(f"FAIL dockerignore: {path} {'should' if want_ignored else 'should not'} be left out")
    failures += bool(wrong)
    if not wrong:
        print(f"ok   dockerignore: {len(cases)} paths matched as Docker matches them")
    total = len(MUTATIONS) + len(DOC_MUTATIONS) + len(want) + 2
    print(f"self-test: {total - failures} passed, {failures} failed")
    return 1 if failures else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=ROOT, help="repository root (the build context)")
    ap.add_argument("--dockerfile", help="default: ROOT/docker/Dockerfile")
    ap.add_argument("--self-test", action="store_true", help="check that broken variants fail")
    a = ap.parse_args()
    root = os.path.abspath(a.root)
    dockerfile = a.dockerfile or os.path.join(root, "docker", "Dockerfile")
    if not os.path.isfile(dockerfile):
        print(f"{dockerfile}: no such file", file=sys.stderr)
        return 1
    if a.self_test:
        return self_test(dockerfile, root)
    with open(dockerfile, encoding="utf-8") as f:
        problems = check(f.read(), root)
    shown = os.path.relpath(dockerfile, os.getcwd())
    for p in problems:
        if p.file:
            print(f"{p.file}:{p.line}: {p.message}" if p.line else f"{p.file}: {p.message}")
        else:
            print(f"{shown}:{p.line}: {p.message}")
    if problems:
        print(f"check_dockerfile: {len(problems)} problem(s)")
        return 1
    print(f"{shown}: paths, cmake options, CUDA architectures, base images, apt pins, the profile target, "
          f"entrypoints and the docs agree with the repository")
    return 0


if __name__ == "__main__":
    sys.exit(main())
