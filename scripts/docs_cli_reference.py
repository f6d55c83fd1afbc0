"""MkDocs hook: the command-line reference page, generated from the `clareps` Typer app itself.

The page `cli.md` holds a marker; this hook replaces it with one section per verb (its help text, its
arguments and options with their help and defaults), walking the click command tree that Typer builds.
A verb added to the app appears here without editing the page.
"""

from __future__ import annotations

MARKER = "<!-- clareps-cli-reference -->"


def command_tree():
    """The root click command of `clareps`, every verb registered."""
    import typer

    from clareps import cli

    if not getattr(cli, "_docs_registered", False):
        cli._register()
        cli._docs_registered = True
    return typer.main.get_command(cli.app)


def walk(cmd, path=("clareps",)):
    """(path, command) for the root and every sub-command, depth first, in registration order."""
    yield path, cmd
    for name, sub in getattr(cmd, "commands", {}).items():
        yield from walk(sub, (*path, name))


def _cell(text) -> str:
    return " ".join(str(text or "").split()).replace("|", "\\|")


def _default(param) -> str:
    value = param.default
    if value is None or value == () or value == [] or callable(value) or getattr(param, "is_flag", False) \
            and value is False:
        return ""
    return f"`{value}`"


def render(root) -> str:
    out = []
    for path, cmd in walk(root):
        if len(path) == 1:
            continue
        level = "#" * min(len(path), 4)
        out.append(f"{level} `{' '.join(path)}`\n")
        out.append(_cell(cmd.help or cmd.short_help) + "\n")
        if getattr(cmd, "commands", None):
            out.append("Sub-commands: " + ", ".join(f"`{n}`" for n in cmd.commands) + ".\n")
            continue
        rows = []
        for p in cmd.params:
            if getattr(p, "hidden", False):  # internal options (the processes a verb starts itself)
                continue
            if p.param_type_name == "argument":
                rows.append(f"| `{p.name.upper()}` (argument) | {_cell(getattr(p, 'help', ''))} | |")
            else:
                names = ", ".join(f"`{o}`" for o in (*p.opts, *p.secondary_opts))
                rows.append(f"| {names} | {_cell(p.help)} | {_default(p)} |")
        if rows:
            out.append("| argument / option | meaning | default |\n|---|---|---|\n" + "\n".join(rows) + "\n")
    return "\n".join(out)


def on_page_markdown(markdown, page, config, files):  # noqa: ARG001 (the hook's signature)
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, render(command_tree()))
