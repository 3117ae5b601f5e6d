package auth

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
)

// Algorithm families, the values of Config.Alg. A family pins the kind of
// key and the algorithms a token may name: a token that names another one
// is refused before its signature is checked.
const (
	// AlgHS is HMAC with a shared secret: HS256, and HS384 and HS512 when
	// the secret is long enough for them (48 and 64 bytes, RFC 7518 §3.2).
	AlgHS = "HS"
	// AlgRS is RSA with a public key of at least 2048 bits: RS256, RS384,
	// RS512, PS256, PS384, PS512.
	AlgRS = "RS"
	// AlgES is ECDSA with the algorithm of the key's curve: ES256 for
	// P-256, ES384 for P-384, ES512 for P-521.
	AlgES = "ES"
	// AlgEdDSA is Ed25519.
	AlgEdDSA = "EdDSA"
)

// MinSecretBytes is the shortest HMAC secret: a key as long as the SHA-256
// output, as RFC 7518 §3.2 requires for HS256.
const MinSecretBytes = 32

// minRSABits is the smallest RSA modulus accepted.
const minRSABits = 2048

// keyBytes returns the key of c: Key, or the contents of KeyFile. A secret
// read from a file loses its trailing line breaks, which editors add.
func (c *Config) keyBytes() ([]byte, error) {
	switch {
	case len(c.Key) > 0 && c.KeyFile != "":
		return nil, errors.New("auth: both Key and KeyFile are set")
	case len(c.Key) > 0:
		return c.Key, nil
	case c.KeyFile == "":
		return nil, errors.New("auth: no key: set Key or KeyFile")
	}
	b, err := os.ReadFile(c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("auth: key file: %w", err)
	}
	if c.Alg == AlgHS {
		b = bytes.TrimRight(b, "\r\n")
	}
	return b, nil
}

// checkSecret refuses an HMAC secret that is too short, or that is a PEM
// key: with Alg "HS" by mistake, the public key would become a secret that
// anyone can read and sign with.
func checkSecret(b []byte) error {
	if bytes.Contains(b, []byte("-----BEGIN ")) {
		return errors.New(`auth: the HS secret is a PEM key: for a public key set Alg to "RS", "ES" or "EdDSA"`)
	}
	if len(b) < MinSecretBytes {
		return fmt.Errorf("auth: the HS secret is %d bytes, at least %d are needed", len(b), MinSecretBytes)
	}
	return nil
}

// pemBlock returns the first PEM block of b.
func pemBlock(b []byte) (*pem.Block, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("auth: the key is not PEM")
	}
	return block, nil
}

// parsePublicKey reads a PEM public key (PUBLIC KEY, RSA PUBLIC KEY, or a
// CERTIFICATE's key) of the family alg. A private key is refused: the
// verifier needs only the public one, and should not hold what can mint.
func parsePublicKey(alg string, b []byte) (crypto.PublicKey, error) {
	block, err := pemBlock(b)
	if err != nil {
		return nil, err
	}
	var key any
	switch block.Type {
	case "PUBLIC KEY":
		key, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		key, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
			key = cert.PublicKey
		}
	case "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY":
		return nil, fmt.Errorf("auth: the key is a %s: give the verifier the public key", block.Type)
	default:
		return nil, fmt.Errorf("auth: PEM block %q is not a public key", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("auth: public key: %w", err)
	}
	return key, checkKeyFamily(alg, key)
}

// parsePrivateKey reads a PEM private key (PRIVATE KEY, RSA PRIVATE KEY or
// EC PRIVATE KEY) of the family alg, for Mint.
func parsePrivateKey(alg string, b []byte) (crypto.Signer, error) {
	block, err := pemBlock(b)
	if err != nil {
		return nil, err
	}
	var key any
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("auth: PEM block %q is not a private key", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("auth: private key: %w", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("auth: %T is not a signing key", key)
	}
	return signer, checkKeyFamily(alg, signer.Public())
}

// checkKeyFamily refuses a public key that is not of the family alg.
func checkKeyFamily(alg string, key crypto.PublicKey) error {
	switch k := key.(type) {
	case *rsa.PublicKey:
		if alg != AlgRS {
			break
		}
		if k.N.BitLen() < minRSABits {
			return fmt.Errorf("auth: the RSA key has %d bits, at least %d are needed", k.N.BitLen(), minRSABits)
		}
		return nil
	case *ecdsa.PublicKey:
		if alg != AlgES {
			break
		}
		if esMethod(k) == "" {
			return fmt.Errorf("auth: ECDSA curve %s is not P-256, P-384 or P-521", k.Curve.Params().Name)
		}
		return nil
	case ed25519.PublicKey:
		if alg == AlgEdDSA {
			return nil
		}
	}
	return fmt.Errorf("auth: %s key is not of the %s family", keyKind(key), alg)
}

// keyKind names the kind of a public key, with its article.
func keyKind(key crypto.PublicKey) string {
	switch key.(type) {
	case *rsa.PublicKey:
		return "an RSA"
	case *ecdsa.PublicKey:
		return "an ECDSA"
	case ed25519.PublicKey:
		return "an Ed25519"
	}
	return fmt.Sprintf("a %T", key)
}

// esMethod is the one ECDSA algorithm of k's curve, or "".
func esMethod(k *ecdsa.PublicKey) string {
	switch k.Curve {
	case elliptic.P256():
		return "ES256"
	case elliptic.P384():
		return "ES384"
	case elliptic.P521():
		return "ES512"
	}
	return ""
}

// GenerateKey makes a new key of the family alg, for tests and for minting
// tokens: for AlgHS a random 32-byte secret, returned as both private and
// public; otherwise a PEM private key (PKCS #8) for Mint and a PEM public
// key (PKIX) for NewJWT, RSA 2048 bits, ECDSA P-256 or Ed25519.
func GenerateKey(alg string) (private, public []byte, err error) {
	var key crypto.Signer
	switch alg {
	case AlgHS:
		secret := make([]byte, MinSecretBytes)
		_, _ = rand.Read(secret) // crypto/rand.Read never fails
		return secret, secret, nil
	case AlgRS:
		key, err = rsa.GenerateKey(rand.Reader, minRSABits)
	case AlgES:
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case AlgEdDSA:
		_, key, err = ed25519.GenerateKey(rand.Reader)
	default:
		return nil, nil, unknownAlg(alg)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("auth: generate key: %w", err)
	}
	priv, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("auth: generate key: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, nil, fmt.Errorf("auth: generate key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: priv}),
		pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), nil
}

// unknownAlg is the error for a Config.Alg that is not a family.
func unknownAlg(alg string) error {
	return fmt.Errorf(`auth: algorithm family %q: want "HS", "RS", "ES" or "EdDSA"`, alg)
}
