// Package auth authenticates WebSocket clients and decides which topics
// each may subscribe and publish to. It knows nothing of event loops: it
// turns credentials into an *Identity, and says how expensive that is.
//
// # Credentials
//
//   - JWT connection tokens (NewJWT, JWT.Verify), signed with an HMAC
//     secret (HS256), or checked with a public key: RSA (RS256, PS256...),
//     ECDSA (ES256...) or Ed25519 (EdDSA). The configured family pins the
//     algorithms, so "alg": "none", another family, or an HMAC token
//     "signed" with the bytes of the public key are all refused before any
//     signature is computed. Mint makes tokens (GenerateKey makes keys).
//   - HTTP basic credentials against an htpasswd file of bcrypt hashes
//     (LoadHtpasswd, Htpasswd.CheckBasic), with a cache of recent
//     successes (Htpasswd.Cached).
//   - No credentials, where authentication is optional: Anonymous gives
//     such clients one shared identity with the topics they are granted.
//
// Every refusal is a preallocated *Error with the HTTP status to answer
// (Status) and a short reason that never repeats the credentials.
//
// # Claims
//
// A token's claims are the registered "sub", "exp", "nbf", "iat", "iss",
// "aud", "jti", and wsd's "topics" (patterns the user may subscribe to),
// "publish" (patterns it may publish to) and "info" (a JSON object about
// the user, at most 1 KiB by default, kept as raw JSON for the
// application). "exp" is required, and kept in Identity.Expires for the
// server to enforce while the client stays connected. "sub" is required: a
// client without a user id connects without a token, as Anonymous.
//
// A user id (a token's "sub", an htpasswd user name) is 1 to 128 bytes of
// printable UTF-8 with no space and none of . , * > { }. It is one segment
// of a topic name: the personal topic "user.<id>", which every user may
// subscribe to, and patterns such as "chat.{sub}.*" can then never reach
// another user's topics.
//
// # Topic patterns
//
// A pattern is an exact topic name ("news"), "*" (every topic), or a prefix
// ending in "*": "news.*" matches every topic that starts with "news.",
// "news.x" and "news.x.y" alike, but not "news". These are the semantics of
// the daemon's -client-publish list. "{sub}" in a pattern stands for the
// user id, as text: "user.{sub}" grants alice "user.alice" only, whatever
// her id holds. Identity.CanSubscribe and Identity.CanPublish match without
// allocating.
//
// # Cost, and where checks run
//
// CPU time per check on one core of an AMD EPYC (go test -bench . ./auth/,
// the cpu-ns/op column):
//
//	HS256 token                          10 µs    on the event loop
//	RS256 token (2048 bits)              43 µs    on a Pool
//	EdDSA token                          65 µs    on a Pool
//	ES256 token (P-256)                  88 µs    on a Pool
//	token of a refused algorithm          8 µs    no signature is computed
//	token over MaxTokenBytes           0.005 µs   refused before decoding
//	basic auth, Htpasswd.Cached hit     1.1 µs    on the event loop
//	basic auth, bcrypt at cost 10        59 ms    on a Pool
//	basic auth, bcrypt at cost 12       237 ms    on a Pool
//	Identity.CanSubscribe, 4 patterns  0.03 µs    no allocation
//
// A Pool runs the slow checks on a fixed number of goroutines behind a
// bounded queue, and refuses work past it with ErrBusy (503), so a storm
// of logins costs bounded CPU and is answered early.
package auth
