package app

// PINHashByPIN is the stored form of a PIN started before PINHash keyed it
// by the user, for tests of PINs pending across the upgrade.
func (k *Keys) PINHashByPIN(pinID, code string) []byte { return k.pinHashByPIN(pinID, code) }
