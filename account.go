package verity

import "time"

// Account is an API customer. It authenticates with X-Service-Auth
// "username:password"; only a keyed hash of the password is stored.
type Account struct {
	ID         string
	Username   string
	SecretHash []byte // HMAC-SHA256 of the password under the server key
	CreatedAt  time.Time
}
