package totp

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"

	"github.com/boombuler/barcode"
	"github.com/boombuler/barcode/qr"
)

// quietZone is the white border, in modules, that ISO/IEC 18004 requires around a QR code.
const quietZone = 4

// QRPNG returns a size×size PNG of a QR code encoding uri, with a quiet zone, for display during enrolment.
//
// boombuler/barcode draws the modules without the quiet-zone border scanners need and
// barcode.Scale alone can leave none, so the code is scaled to whole pixels per module
// with room for the border and drawn centred on a white two-colour image.
// The image encodes the secret: serve it with Cache-Control: no-store and never log it.
func QRPNG(uri string, size int) ([]byte, error) {
	code, err := qr.Encode(uri, qr.M, qr.Auto)
	if err != nil {
		// Not wrapped: the library's error quotes the content, and the URI
		// holds the secret.
		return nil, fmt.Errorf("totp: a key URI of %d bytes does not fit in a QR code", len(uri))
	}
	modules := code.Bounds().Dx()
	factor := size / (modules + 2*quietZone)
	if factor < 1 {
		return nil, fmt.Errorf("totp: qr code needs at least %d×%d pixels, got %d", modules+2*quietZone, modules+2*quietZone, size)
	}
	scaled, err := barcode.Scale(code, modules*factor, modules*factor)
	if err != nil {
		return nil, fmt.Errorf("totp: scale qr code: %w", err)
	}

	// Palette index 0 is white, so the fresh image is already an all-white background.
	img := image.NewPaletted(image.Rect(0, 0, size, size), color.Palette{color.White, color.Black})
	offset := (size - modules*factor) / 2
	dst := image.Rect(offset, offset, offset+modules*factor, offset+modules*factor)
	draw.Draw(img, dst, scaled, scaled.Bounds().Min, draw.Src)

	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("totp: encode png: %w", err)
	}
	return buf.Bytes(), nil
}
