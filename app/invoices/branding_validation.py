"""Checks on branding values: colours, number prefixes and logos.

A logo goes into every PDF the customer downloads, so it is decoded and checked here, once,
when a billing admin sets it, and stored only if it passed:
- PNG: at most 512 KB, with the PNG signature, decoded in full by Pillow (a truncated or
  corrupt file fails here, not in a customer's download), at most 4096 x 4096 pixels (a small
  file can inflate to a huge bitmap);
- SVG: at most 512 KB of UTF-8, parsed by defusedxml with DTDs, entities and external
  references forbidden; refused when it holds anything that runs or fetches: `<script>`,
  `<foreignObject>` (HTML inside SVG), event attributes (`onload=`...), a link (`href`,
  `xlink:href`) to anything but a fragment of itself (`#id`) or an inline raster image
  (`data:image/png|jpeg|gif|webp`), and `url(...)` or `@import` pointing outside;
- both: drawn once by the PDF renderer, so a logo it cannot draw is refused now.
"""

import hashlib
import io
import re
from dataclasses import dataclass
from typing import Final
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as parse_xml
from PIL import Image, UnidentifiedImageError

from app.core.branding_values import BrandingValueError

PNG_MEDIA_TYPE: Final = "image/png"
SVG_MEDIA_TYPE: Final = "image/svg+xml"
LOGO_MEDIA_TYPES: Final = (PNG_MEDIA_TYPE, SVG_MEDIA_TYPE)
MAX_LOGO_BYTES: Final = 512 * 1024
MAX_LOGO_PIXELS_PER_SIDE: Final = 4096

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_SVG_NAMESPACE = "http://www.w3.org/2000/svg"
# Elements that run code or embed another document: named in the refusal, so a designer
# knows what to remove.
_FORBIDDEN_ELEMENTS = {
    "script",
    "foreignobject",
    "iframe",
    "embed",
    "object",
    "handler",
    "listener",
}
# Everything else in the SVG namespace must be one of these: drawing, text, paint servers,
# clipping, masks and simple filters. An allowlist, because the list of SVG features that
# fetch or change things (animation setting an href, <feImage>, <a>, CSS tricks) is longer
# than anyone remembers. Elements of other namespaces (an editor's metadata) are inert.
_ALLOWED_ELEMENTS = {
    "svg", "g", "defs", "symbol", "use", "title", "desc", "metadata", "switch",
    "path", "rect", "circle", "ellipse", "line", "polyline", "polygon",
    "text", "tspan", "textpath",
    "lineargradient", "radialgradient", "stop", "pattern", "clippath", "mask", "marker",
    "image", "style",
    "filter", "feblend", "fecolormatrix", "fecomponenttransfer", "fecomposite", "feflood",
    "fegaussianblur", "femerge", "femergenode", "femorphology", "feoffset", "fefunca",
    "fefuncb", "fefuncg", "fefuncr", "fedropshadow",
}  # fmt: skip
# CSS that can fetch (url() outside the document, @import, image-set(), src()), or that
# hides such a thing behind an escape (\75rl(...) is url(...)).
_FETCHING_CSS = re.compile(r"@import|@font-face|image-set\(|\bsrc\(|\\", re.IGNORECASE)
# A processing instruction other than the XML declaration (<?xml-stylesheet href=...?>);
# the parser drops them, so they are looked for in the text.
_PROCESSING_INSTRUCTION = re.compile(r"<\?(?!xml\s)", re.IGNORECASE)
_SAFE_DATA_URI = re.compile(r"^data:image/(?:png|jpeg|gif|webp)[;,]", re.IGNORECASE)
# url(...) whose target is not a fragment of the document itself (url(#gradient) is fine).
_OUTSIDE_URL = re.compile(r"url\(\s*['\"]?\s*(?!#)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class ValidatedLogo:
    media_type: str
    data: bytes
    sha256: str

    @property
    def file_extension(self) -> str:
        return "png" if self.media_type == PNG_MEDIA_TYPE else "svg"


def validate_logo(data: bytes, media_type: str) -> ValidatedLogo:
    """The logo, checked; raises BrandingValueError saying what is wrong with it.

    CPU work (decoding, a test render): call it from a worker thread."""
    if media_type not in LOGO_MEDIA_TYPES:
        raise BrandingValueError(
            f"The logo must be a PNG ({PNG_MEDIA_TYPE}) or an SVG ({SVG_MEDIA_TYPE}), "
            f"not {media_type!r}."
        )
    if not data:
        raise BrandingValueError("The logo is empty.")
    if len(data) > MAX_LOGO_BYTES:
        raise BrandingValueError(
            f"The logo is {len(data)} bytes; at most {MAX_LOGO_BYTES} (512 KB) are accepted."
        )
    if media_type == PNG_MEDIA_TYPE:
        _check_png(data)
    else:
        _check_svg(data)
    logo = ValidatedLogo(media_type, data, hashlib.sha256(data).hexdigest())
    # Imported here: the renderer is the heavier module, and it imports nothing from this one
    # at its top either.
    from app.invoices.rendering import LogoNotRenderable, check_logo_renders

    try:
        check_logo_renders(logo)
    except LogoNotRenderable as error:
        raise BrandingValueError(f"The logo cannot be drawn: {error}") from None
    return logo


def _check_png(data: bytes) -> None:
    if not data.startswith(_PNG_SIGNATURE):
        raise BrandingValueError("The logo is not a PNG image (no PNG signature).")
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
            width, height = image.size
            if max(width, height) > MAX_LOGO_PIXELS_PER_SIDE:
                raise BrandingValueError(
                    f"The PNG is {width} x {height} pixels; at most "
                    f"{MAX_LOGO_PIXELS_PER_SIDE} on each side."
                )
            # verify() checks the chunks and their CRCs without decoding the pixels...
            image.verify()
        # ...and load() decodes them (a file cut short passes verify() but not this).
        with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
            image.load()
    except BrandingValueError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise BrandingValueError("The PNG image is broken: it cannot be decoded.") from None


def _check_svg(data: bytes) -> None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise BrandingValueError("The SVG is not UTF-8 text.") from None
    try:
        root = parse_xml(text, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException:
        raise BrandingValueError(
            "The SVG declares a DTD or entities; those are refused (they can fetch files)."
        ) from None
    except ParseError:
        raise BrandingValueError("The SVG is not well-formed XML.") from None
    if _PROCESSING_INSTRUCTION.search(text.lstrip("\ufeff \t\r\n")):
        raise BrandingValueError(
            "The SVG contains a processing instruction (such as <?xml-stylesheet?>); "
            "those are refused (they can fetch files)."
        )
    if root.tag != f"{{{_SVG_NAMESPACE}}}svg":
        raise BrandingValueError(
            "The file is not an SVG image: its root must be <svg> in the SVG namespace "
            f'(xmlns="{_SVG_NAMESPACE}").'
        )
    for element in root.iter():
        _check_svg_element(element)


def _local_name(name: str) -> str:
    return name.rsplit("}", 1)[-1].lower()


def _check_svg_element(element: Element) -> None:
    if not isinstance(element.tag, str):  # a comment or processing instruction
        return
    tag = _local_name(element.tag)
    if tag in _FORBIDDEN_ELEMENTS:
        raise BrandingValueError(f"The SVG contains a <{tag}> element; scripts are refused.")
    if element.tag.startswith(f"{{{_SVG_NAMESPACE}}}") and tag not in _ALLOWED_ELEMENTS:
        raise BrandingValueError(
            f"The SVG contains a <{tag}> element, which a logo does not need "
            "(animation, links and embedded content are refused)."
        )
    if tag == "style" and element.text and _refers_outside(element.text):
        raise BrandingValueError("The SVG's <style> refers to an external resource.")
    for name, value in element.attrib.items():
        attribute = _local_name(name)
        if attribute.startswith("on"):
            raise BrandingValueError(
                f"The SVG has an event handler ({attribute}=...); scripts are refused."
            )
        if attribute == "href":
            target = value.strip()
            if not (target.startswith("#") or _SAFE_DATA_URI.match(target)):
                raise BrandingValueError(
                    f"The SVG links to {target[:80]!r}; only references inside the image "
                    "(#id) or inline PNG, JPEG, GIF or WebP data are accepted."
                )
        elif _refers_outside(value):
            raise BrandingValueError(f"The SVG's {attribute}=... refers to an external resource.")


def _refers_outside(text: str) -> bool:
    return bool(_OUTSIDE_URL.search(text) or _FETCHING_CSS.search(text))
