"""What a chat template's source says about how it renders: whether each message renders alone.

Many templates (roleforge's own for built models, ChatML ones without a default system
prompt) are one loop over `messages` whose body reads nothing but the message: then the
rendering of a conversation is the renderings of its messages one after another, and a
message seen before (a character's persona prompt, a turn augmentation left alone) need
not be rendered again. Jinja2 has no such notion, so it is read here from the template's
syntax tree, conservatively: anything that could carry state from one message to the next
or look at the other messages makes the answer False.
"""

from __future__ import annotations

from typing import Any

# Nodes that may carry state between loop iterations, leave the loop early, or bring in
# other templates' code: a template holding one is not judged further.
_UNSAFE = ("NSRef", "Break", "Extends", "Include", "Import", "FromImport")
# Names whose value is not the same for every message: the loop's own variable, the whole
# conversation, the clock (transformers' `strftime_now`).
_CONTEXT = frozenset({"loop", "messages", "strftime_now"})


def renders_each_message_alone(environment: Any, source: str) -> bool:
    """Return whether the chat template `source` (parsed in `environment`, the one it was
    compiled in, for its extensions' tags) renders a list of messages as the concatenation
    of what each message renders alone, given it renders nothing for no messages.

    That holds when the template is one top-level `{% for message in messages %}` (no
    filter, no else, not recursive), with no `{% set %}` outside its body (so the body reads,
    besides the message, only render arguments, globals and macros); nothing
    anywhere reads `loop`, `messages` (but as the loop's iterable) or the clock; and no
    namespace attribute is assigned, no loop is left with `break`, no other template is
    pulled in. What lies outside the loop then cannot see the messages, so it renders what
    it renders for none (the caller checks that is nothing). Jinja scopes a `{% set %}`
    inside a loop body to one iteration, and the sandbox forbids changing the messages.
    """
    from jinja2 import nodes
    from jinja2.exceptions import TemplateSyntaxError

    try:
        tree = environment.parse(source)
    except TemplateSyntaxError:
        return False
    loops = [
        n
        for n in tree.body
        if isinstance(n, nodes.For) and isinstance(n.iter, nodes.Name) and n.iter.name == "messages"
    ]
    if len(loops) != 1:
        return False
    loop = loops[0]
    if (
        not isinstance(loop.target, nodes.Name)
        or loop.test is not None
        or loop.else_
        or loop.recursive
    ):
        return False
    if any(type(n).__name__ in _UNSAFE for n in tree.find_all(nodes.Node)):
        return False
    context_reads = [n for n in tree.find_all(nodes.Name) if n.ctx == "load" and n.name in _CONTEXT]
    if context_reads != [loop.iter]:
        return False
    in_loop = {id(n) for child in loop.body for n in child.find_all(nodes.Node)}
    in_loop |= {id(child) for child in loop.body}
    outside_sets = [
        n for n in tree.find_all((nodes.Assign, nodes.AssignBlock)) if id(n) not in in_loop
    ]
    return not outside_sets


def overlaps_itself(text: str) -> bool:
    """Return whether two occurrences of `text` can overlap in a string: whether a proper
    prefix of `text` is also its suffix (the last entry of Knuth-Morris-Pratt's failure
    table is not 0). Occurrences of a text that cannot overlap are found, and counted,
    exactly by `str.split` / `str.count`."""
    border = [0] * len(text)
    k = 0
    for i in range(1, len(text)):
        while k and text[i] != text[k]:
            k = border[k - 1]
        if text[i] == text[k]:
            k += 1
        border[i] = k
    return bool(text) and border[-1] > 0


def without_generation_blocks(environment: Any, source: str) -> Any | None:
    """Return the template `source` compiled in `environment` with each `{% generation %}`
    block replaced by its body, or None where it has none or one cannot be replaced.

    transformers' `{% generation %}` tag only records where the character's text lies
    when `apply_chat_template` asks for an assistant mask; otherwise it writes its body's
    output unchanged, but through a macro call per message, half the rendering time of the
    message pieces. The body moves into the enclosing scope, so a block that sets
    variables, defines or calls macros, or reads a macro's own names is left (None), as is
    any template where the environment escapes output (a macro's output is Markup then).
    """
    from jinja2 import nodes
    from jinja2.exceptions import TemplateSyntaxError
    from jinja2.visitor import NodeTransformer

    if environment.autoescape is not False:
        return None
    try:
        tree = environment.parse(source)
    except TemplateSyntaxError:
        return None
    blocks = [n for n in tree.find_all(nodes.CallBlock) if _is_generation(n)]
    if not blocks:
        return None
    scoped = (nodes.Assign, nodes.AssignBlock, nodes.Macro, nodes.CallBlock, nodes.NSRef)
    for block in blocks:
        inside = [n for child in block.body for n in (child, *child.find_all(nodes.Node))]
        if any(isinstance(n, scoped) for n in inside) or any(
            isinstance(n, nodes.Name) and n.name in ("caller", "varargs", "kwargs") for n in inside
        ):
            return None

    class _Inline(NodeTransformer):
        def visit_CallBlock(self, node: Any) -> Any:
            if _is_generation(node):
                return [self.visit(child) for child in node.body]
            return self.generic_visit(node)

    return environment.from_string(_Inline().visit(tree))


def _is_generation(node: Any) -> bool:
    from jinja2 import nodes

    call = node.call
    return (
        isinstance(call, nodes.Call)
        and isinstance(call.node, nodes.ExtensionAttribute)
        and call.node.name == "_generation_support"
        and not (call.args or call.kwargs or call.dyn_args or call.dyn_kwargs)
        and not (node.args or node.defaults)
    )
