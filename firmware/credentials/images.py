"""Code texts from image bytes (PNG, JPEG, ...) and PDF pages, bounded before decoding."""
from __future__ import annotations

import io
import math
import warnings
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy, Pillow and pypdfium2 are imported when an image is read
    import numpy as np
    import pypdfium2
    from numpy.typing import NDArray
    from PIL.Image import Image as PilImage

# A phone photo is 12-50 MP; the decoded RGB copy costs 3 bytes a pixel, so 50 MP is ~150 MB.
# The size is read from the image header, before any pixel is decoded (a 12,000 x 12,000 PNG
# of a few kilobytes would otherwise cost 1.6 GB). A rendered PDF page obeys the same bound.
MAX_IMAGE_PIXELS = 50_000_000
# A certificate PDF is one or two pages; a long document is not what a technician checks.
MAX_PDF_PAGES = 8
# 4x the PDF's 72 points per inch is ~300 dpi: a printed QR's modules are several pixels wide.
PDF_RENDER_SCALE = 4.0
PDF_MAGIC = b"%PDF-"
# A tight crop without quiet zone is read again on a copy with this white margin (pixels).
_RETRY_MARGIN = 40
_WHITE = (255, 255, 255)


class ImageTooLarge(ValueError):
    """The image's header declares more pixels than `MAX_IMAGE_PIXELS`: refused undecoded."""


class PdfUnavailable(RuntimeError):
    """Reading a PDF needs the optional `pdf` extra (pypdfium2), which is not installed."""


class TooManyPages(ValueError):
    """The PDF has more than `MAX_PDF_PAGES` pages."""


def read_image_texts(data: bytes, max_pixels: int = MAX_IMAGE_PIXELS) -> list[str]:
    """Every code text in an image file's bytes (PNG, JPEG, ...); ValueError if not an image,
    ImageTooLarge if it declares more than `max_pixels` pixels (checked before decoding)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():  # our own, smaller bound decides; not Pillow's warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
        with image:
            width, height = image.size
            if width * height > max_pixels:
                raise ImageTooLarge(f"image of {width} x {height} pixels is larger than "
                                    f"{max_pixels:,} pixels")
            rgb = _rgb_on_white(image)
    except Image.DecompressionBombError as exc:  # Pillow's own (larger) bound, at open()
        raise ImageTooLarge(str(exc)) from None
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"not a readable image: {exc}") from None
    return texts_in_rgb(rgb)


def _rgb_on_white(image: PilImage) -> NDArray[np.uint8]:
    """The image as an RGB uint8 array, transparent parts composited onto white.

    A QR exported with a transparent background stores its light modules as transparent
    pixels whose colour is usually black: dropping alpha would make the whole code black.
    """
    import numpy as np
    from PIL import Image

    has_alpha = image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _WHITE + (255,))
        image = Image.alpha_composite(background, rgba)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def texts_in_rgb(rgb: NDArray[np.uint8]) -> list[str]:
    """Every code text in an RGB frame, read by the kiosk's own reader (zxing-cpp without it)."""
    import numpy as np

    try:
        from firmware.codes import read_codes
    except ImportError:  # the kiosk's reader is not installed: use zxing-cpp directly
        return _zxing_texts(rgb)
    texts = read_codes(rgb)
    if not texts:  # a tight crop without quiet zone: retry on a padded copy
        margin = _RETRY_MARGIN
        padded = np.pad(rgb, ((margin, margin), (margin, margin), (0, 0)), constant_values=255)
        texts = read_codes(padded)
    return texts


def _zxing_texts(rgb: NDArray[np.uint8]) -> list[str]:
    import zxingcpp
    found = zxingcpp.read_barcodes(rgb, formats=zxingcpp.barcode_formats_from_str("QRCode,Aztec"))
    return [b.text for b in found if b.valid]


def is_pdf(data: bytes) -> bool:
    """True when the bytes start like a PDF file."""
    return data[: len(PDF_MAGIC)] == PDF_MAGIC


def read_pdf_texts(data: bytes, max_pages: int = MAX_PDF_PAGES,
                   max_pixels: int = MAX_IMAGE_PIXELS) -> list[str]:
    """Every code text on every page of a PDF, each page rendered at most `max_pixels` pixels.

    Raises PdfUnavailable without pypdfium2, TooManyPages past `max_pages`, ValueError when the
    bytes are not a readable PDF.
    """
    try:
        import pypdfium2 as pdfium
    except ImportError:
        raise PdfUnavailable("reading a PDF needs the optional extra: "
                             "pip install 'healthgate[pdf]' (pypdfium2)") from None
    try:
        document = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        raise ValueError(f"not a readable PDF: {exc}") from None
    try:
        pages = len(document)
        if pages > max_pages:
            raise TooManyPages(f"PDF of {pages} pages has more than {max_pages}")
        texts: list[str] = []
        for index in range(pages):
            texts.extend(_page_texts(document, index, max_pixels))
        return texts
    finally:
        document.close()


def _page_texts(document: pypdfium2.PdfDocument, index: int, max_pixels: int) -> list[str]:
    """Render one page (scale capped so the bitmap stays within `max_pixels`) and read it."""
    import numpy as np

    page = document[index]
    try:
        width, height = page.get_size()  # points
        area = max(width * height, 1.0)
        # 0.99: rounding the page's sides up to whole pixels must not cross the bound.
        scale = min(PDF_RENDER_SCALE, 0.99 * math.sqrt(max_pixels / area))
        if not math.isfinite(scale) or scale <= 0:
            return []
        bitmap = page.render(scale=scale, fill_color=_WHITE + (255,))
        try:
            rgb = np.asarray(bitmap.to_pil().convert("RGB"), dtype=np.uint8)
        finally:
            bitmap.close()
    finally:
        page.close()
    return texts_in_rgb(rgb)
