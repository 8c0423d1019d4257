"""MJML -> HTML. The only module that imports mjml-python."""

from __future__ import annotations

from mjml import mjml2html

from newsletter.errors import TemplateError


def compile_mjml(source: str, *, template_name: str) -> str:
    try:
        return mjml2html(source, disable_comments=True)
    except Exception as exc:  # mjml-python raises plain exceptions with the parser's message
        raise TemplateError(
            f"{template_name}: MJML could not be compiled: {exc}",
            hint="check the tags in the template; `newsletter preview` shows the result",
        ) from None
