"""Reading codes from real images: PNG, JPEG, a camera-like frame, and images that hold no code."""

from __future__ import annotations

import io
import os

import pytest
from PIL import Image, ImageDraw

from bench.frames import camera_frame, clean_image
from issuers import render
from sdk import Reason
from sdk.image import available_decoders, decode_image
from verifiers.scenes import SCENES

DECODERS = ["zxing", "pyzbar"]


def encoded(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB" if fmt == "JPEG" else img.mode).save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def test_both_decoders_are_installed():
    assert available_decoders() == ["zxing", "pyzbar"]


@pytest.mark.parametrize("decoder", DECODERS)
def test_png_and_jpeg_of_a_code_are_accepted(verifier, make_code, decoder):
    code = make_code()
    png = render.png(code)
    result = verifier.verify_image(png, SCENES["service-window"], decoder=decoder)
    assert result.accepted and result.kind == "id", result
    jpeg = encoded(Image.open(io.BytesIO(png)), "JPEG", quality=70)
    assert verifier.verify_image(jpeg, decoder=decoder).accepted


@pytest.mark.parametrize("decoder", DECODERS)
def test_camera_frame_with_a_small_rotated_blurred_noisy_code_is_accepted(verifier, make_code, subject, decoder):
    code = make_code()
    frame = camera_frame(code, module_px=5.0, angle_deg=12.0, blur=1.0, noise=8.0, seed=7)
    assert frame.size == (1280, 960)
    result = verifier.verify_image(encoded(frame, "JPEG", quality=80), SCENES["bus"], decoder=decoder)
    assert result.accepted, result
    assert result.subject_id == subject


def test_svg_rendering_holds_the_same_code(make_code):
    code = make_code()
    svg = render.svg(code)
    assert svg.startswith("<svg") and "<path" in svg
    assert render.qr_version(code) <= 10


def test_identity_code_fits_qr_version_10_at_level_m(make_code):
    versions = {render.qr_version(make_code()) for _ in range(20)}
    assert max(versions) <= 10, versions


def test_image_without_a_qr_code_is_no_code_found(verifier):
    img = Image.new("RGB", (640, 480), "white")
    ImageDraw.Draw(img).ellipse((100, 100, 400, 300), fill="navy")
    result = verifier.verify_image(encoded(img, "PNG"))
    assert result.reason is Reason.NO_CODE_FOUND and not result.accepted


@pytest.mark.parametrize("data", [b"", os.urandom(5000), b"\x89PNG\r\n\x1a\n" + os.urandom(300), b"GIF89a"])
def test_bytes_that_are_not_an_image_are_no_code_found(verifier, data):
    result = verifier.verify_image(data)
    assert result.reason is Reason.NO_CODE_FOUND


def test_truncated_image_file_is_no_code_found(verifier, make_code):
    png = render.png(make_code())
    assert verifier.verify_image(png[: len(png) // 2]).reason is Reason.NO_CODE_FOUND


def test_image_with_too_many_pixels_is_refused_before_decoding(verifier):
    img = Image.new("1", (9000, 9000))
    result = verifier.verify_image(encoded(img, "PNG"))
    assert result.reason is Reason.NO_CODE_FOUND and "too many pixels" in result.detail


def test_qr_code_of_a_web_address_is_not_a_citycode(verifier):
    import qrcode

    buf = io.BytesIO()
    qrcode.make("https://example.com/promo").save(buf)
    assert verifier.verify_image(buf.getvalue()).reason is Reason.NOT_A_CITYCODE


def test_ours_is_chosen_when_a_frame_shows_another_qr_code_too(verifier, make_code):
    import qrcode

    ours = clean_image(make_code()).convert("L")
    other = qrcode.make("https://example.com").get_image().convert("L")
    frame = Image.new("L", (ours.width + other.width + 40, max(ours.height, other.height)), 255)
    frame.paste(other, (0, 0))
    frame.paste(ours, (other.width + 40, 0))
    assert verifier.verify_image(frame).accepted


def test_unknown_decoder_name_is_a_refusal_not_an_exception(verifier, make_code):
    result = verifier.verify_image(render.png(make_code()), decoder="magic")
    assert result.reason is Reason.NO_CODE_FOUND and "unknown decoder" in result.detail
    with pytest.raises(ValueError):
        decode_image(render.png(make_code()), decoder="magic")
