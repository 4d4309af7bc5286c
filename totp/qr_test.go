package totp_test

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"strings"
	"testing"

	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/qrcode"

	"github.com/verityhq/verity/totp"
)

func TestQRPNGDecodesToTheURI(t *testing.T) {
	secret, err := totp.GenerateSecret(totp.SHA1)
	if err != nil {
		t.Fatalf("GenerateSecret: %v", err)
	}
	long, err := totp.GenerateSecret(totp.SHA512)
	if err != nil {
		t.Fatalf("GenerateSecret: %v", err)
	}
	sha512 := totp.Params{Algorithm: totp.SHA512, Digits: 8, Period: 60, Skew: 1}
	for _, tt := range []struct {
		name string
		uri  string
		size int
	}{
		{"a default SHA1 URI", totp.URI("Verity", "alice@example.com", secret, totp.DefaultParams()), 256},
		{"a long SHA512 URI with escapes", totp.URI("Acme Co: Europe", "jane doe+test@example.com", long, sha512), 256},
		{"a URI with a non-ASCII label", totp.URI("Vérité", "Zoë", secret, totp.DefaultParams()), 256},
		{"a URI at an uneven size", totp.URI("Verity", "bob", secret, totp.DefaultParams()), 173},
		{"a URI at a generous size", totp.URI("Verity", "carol", secret, totp.DefaultParams()), 512},
		{"the longest URI Verity makes", totp.URI(strings.Repeat("€", 200), strings.Repeat("€", 255), long, sha512), 256},
	} {
		uri, size := tt.uri, tt.size
		t.Run(tt.name+" round-trips through a QR decoder", func(t *testing.T) {
			data, err := totp.QRPNG(uri, size)
			if err != nil {
				t.Fatalf("QRPNG: %v", err)
			}
			img, err := png.Decode(bytes.NewReader(data))
			if err != nil {
				t.Fatalf("png.Decode: %v", err)
			}
			if got, want := img.Bounds(), image.Rect(0, 0, size, size); got != want {
				t.Fatalf("image bounds = %v, want %v", got, want)
			}
			assertWhiteBorder(t, img, 4)
			bmp, err := gozxing.NewBinaryBitmapFromImage(img)
			if err != nil {
				t.Fatalf("NewBinaryBitmapFromImage: %v", err)
			}
			// PURE_BARCODE: the image is an unrotated code on a white ground, and gozxing's
			// finder-pattern search misreads about 1% of such images (zbarimg reads those same
			// files), which made this test flaky without saying anything about the code.
			pure := map[gozxing.DecodeHintType]interface{}{gozxing.DecodeHintType_PURE_BARCODE: true}
			res, err := qrcode.NewQRCodeReader().Decode(bmp, pure)
			if err != nil {
				t.Fatalf("decode QR: %v", err)
			}
			if got := res.GetText(); got != uri {
				t.Fatalf("decoded text = %q, want %q", got, uri)
			}
		})
	}
}

// assertWhiteBorder checks that the outer px pixels on every side are white (part of the quiet zone).
func assertWhiteBorder(t *testing.T, img image.Image, px int) {
	t.Helper()
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			if x >= b.Min.X+px && x < b.Max.X-px && y >= b.Min.Y+px && y < b.Max.Y-px {
				continue
			}
			if r, g, bl, _ := img.At(x, y).RGBA(); r != 0xffff || g != 0xffff || bl != 0xffff {
				t.Fatalf("pixel (%d,%d) = %v, want white quiet zone", x, y, color.RGBAModel.Convert(img.At(x, y)))
			}
		}
	}
}

func TestQRPNGRefusesTooSmallSize(t *testing.T) {
	uri := totp.URI("Verity", "alice@example.com", []byte("12345678901234567890"), totp.DefaultParams())
	for _, size := range []int{-1, 0, 20} {
		if _, err := totp.QRPNG(uri, size); err == nil {
			t.Fatalf("QRPNG(size=%d) succeeded, want error", size)
		}
	}
}

func TestQRPNGErrorsDoNotQuoteTheURI(t *testing.T) {
	// A URI holds the secret, and errors get logged: what does not fit must
	// not come back inside the error.
	uri := "otpauth://totp/x?secret=SEEDSEEDSEED" + strings.Repeat("A", 3000)
	_, err := totp.QRPNG(uri, 256)
	if err == nil {
		t.Fatal("QRPNG of 3,000 bytes succeeded, want an error")
	}
	if strings.Contains(err.Error(), "SEED") {
		t.Fatalf("error quotes the URI: %v", err)
	}
}
