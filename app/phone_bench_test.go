package app

import "testing"

// benchPhones are ordinary numbers as users type them, from several countries.
var benchPhones = []string{
	"+37255512345",
	"+14155552671",
	"+447911123456",
	"+4915112345678",
	"+33612345678",
	"+919876543210",
	"+61412345678",
	"+5511987654321",
	"+44 7911 123456",
	"+1 (415) 555-2671",
}

func BenchmarkNormalizePhone(b *testing.B) {
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, _, err := NormalizePhone(benchPhones[i%len(benchPhones)]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNormalizePhoneWithoutFastPath is NormalizePhone as it was before
// parsePhoneFast: every number through phonenumbers.Parse.
func BenchmarkNormalizePhoneWithoutFastPath(b *testing.B) {
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, _, _, err := normalizePhone(benchPhones[i%len(benchPhones)], false); err != nil {
			b.Fatal(err)
		}
	}
}
