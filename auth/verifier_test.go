package auth_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pushgate/pushgate/auth"
)

// testKeys are generated once: RSA key generation is slow.
type testKeys struct {
	rsa, rsa1024 *rsa.PrivateKey
	ec, ec2      *ecdsa.PrivateKey // P-256
	ec384        *ecdsa.PrivateKey
	ed           ed25519.PublicKey
}

var keys = sync.OnceValue(func() testKeys {
	var k testKeys
	var err error
	if k.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		panic(err)
	}
	if k.rsa1024, err = rsa.GenerateKey(rand.Reader, 1024); err != nil {
		panic(err)
	}
	for _, p := range []struct {
		key   **ecdsa.PrivateKey
		curve elliptic.Curve
	}{{&k.ec, elliptic.P256()}, {&k.ec2, elliptic.P256()}, {&k.ec384, elliptic.P384()}} {
		if *p.key, err = ecdsa.GenerateKey(p.curve, rand.Reader); err != nil {
			panic(err)
		}
	}
	if k.ed, _, err = ed25519.GenerateKey(rand.Reader); err != nil {
		panic(err)
	}
	return k
})

var secret = []byte("0123456789abcdef0123456789abcdef") // 32 bytes

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// pkixPEM is pub as a "PUBLIC KEY" block.
func pkixPEM(t testing.TB, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pemBlock("PUBLIC KEY", der)
}

// certPEM is a self-signed certificate for priv's public key.
func certPEM(t testing.TB, priv crypto.Signer) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "pushgate test issuer"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, priv.Public(), priv)
	if err != nil {
		t.Fatal(err)
	}
	return pemBlock("CERTIFICATE", der)
}

// sign makes a token; jwt/v5 is the signer, as an issuer's would be.
func sign(t testing.TB, m jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newVerifier(t testing.TB, cfg auth.Config) *auth.Verifier {
	t.Helper()
	v, err := auth.NewVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestNewVerifier(t *testing.T) {
	k := keys()
	pkcs8, err := x509.MarshalPKCS8PrivateKey(k.ec)
	if err != nil {
		t.Fatal(err)
	}
	garbageDER := pemBlock("PUBLIC KEY", []byte("not DER"))
	for _, tc := range []struct {
		name string
		cfg  auth.Config
		// For configs that build: a key and method whose tokens verify.
		method  jwt.SigningMethod
		signKey any
	}{
		{"neither", auth.Config{}, nil, nil},
		{"both", auth.Config{Secret: secret, PublicKeyPEM: pkixPEM(t, &k.rsa.PublicKey)}, nil, nil},
		{"short secret", auth.Config{Secret: secret[:auth.MinSecretLen-1]}, nil, nil},
		{"negative leeway", auth.Config{Secret: secret, Leeway: -time.Second}, nil, nil},
		{"garbage PEM", auth.Config{PublicKeyPEM: []byte("-----BEGIN nothing")}, nil, nil},
		{"garbage DER", auth.Config{PublicKeyPEM: garbageDER}, nil, nil},
		{"private key", auth.Config{PublicKeyPEM: pemBlock("PRIVATE KEY", pkcs8)}, nil, nil},
		{"P-384 key", auth.Config{PublicKeyPEM: pkixPEM(t, &k.ec384.PublicKey)}, nil, nil},
		{"RSA 1024", auth.Config{PublicKeyPEM: pkixPEM(t, &k.rsa1024.PublicKey)}, nil, nil},
		{"Ed25519 key", auth.Config{PublicKeyPEM: pkixPEM(t, k.ed)}, nil, nil},

		{"HS256", auth.Config{Secret: secret}, jwt.SigningMethodHS256, secret},
		{"RSA PKIX", auth.Config{PublicKeyPEM: pkixPEM(t, &k.rsa.PublicKey)}, jwt.SigningMethodRS256, k.rsa},
		{"RSA PKCS1", auth.Config{PublicKeyPEM: pemBlock("RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&k.rsa.PublicKey))},
			jwt.SigningMethodRS256, k.rsa},
		{"RSA certificate", auth.Config{PublicKeyPEM: certPEM(t, k.rsa)}, jwt.SigningMethodRS256, k.rsa},
		{"EC PKIX", auth.Config{PublicKeyPEM: pkixPEM(t, &k.ec.PublicKey)}, jwt.SigningMethodES256, k.ec},
		{"EC certificate", auth.Config{PublicKeyPEM: certPEM(t, k.ec)}, jwt.SigningMethodES256, k.ec},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := auth.NewVerifier(tc.cfg)
			if tc.method == nil {
				if err == nil {
					t.Fatal("accepted")
				}
				t.Log(err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			token := sign(t, tc.method, tc.signKey, jwt.MapClaims{"sub": "alice"})
			if c, err := v.Verify(token); err != nil || c.User != "alice" {
				t.Fatalf("Verify: %+v, %v", c, err)
			}
		})
	}
}

func TestSecretIsCopied(t *testing.T) {
	s := bytes.Clone(secret)
	v := newVerifier(t, auth.Config{Secret: s})
	clear(s)
	if _, err := v.Verify(sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{})); err != nil {
		t.Fatal(err)
	}
}
