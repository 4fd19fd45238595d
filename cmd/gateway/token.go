package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pushgate/pushgate/auth"
	"github.com/pushgate/pushgate/protocol"
)

// tokenConfig is what `pushgate token` signs and with which key.
type tokenConfig struct {
	User          string        // claim sub; default none (anonymous)
	Channels      string        // claim channels, comma-separated patterns; default none
	Publish       string        // claim publish, comma-separated patterns; default none
	TTL           time.Duration // exp - iat; default 1h
	JWTSecret     string        // HS256 secret, as the gateway's
	JWTSecretFile string        // file holding JWTSecret, as the gateway's
	JWTPrivateKey string        // PEM file of the RS256 or ES256 private key
}

// tokenKeyFlags are the flags that name the key: they share the
// gateway's environment twins (PUSHGATE_JWT_SECRET, …), so that the token
// command signs with whatever the gateway is configured to verify.
var tokenKeyFlags = map[string]bool{"jwt-secret": true, "jwt-secret-file": true, "jwt-private-key": true}

func newTokenFlagSet(c *tokenConfig) *flag.FlagSet {
	fs := flag.NewFlagSet("pushgate token", flag.ContinueOnError)
	fs.StringVar(&c.User, "user", "", "the user (claim sub), who gets the personal channel #<user>; empty for an anonymous token")
	fs.StringVar(&c.Channels, "channels", "", "comma-separated patterns the client may subscribe to (claim channels), e.g. 'news,chat:*'")
	fs.StringVar(&c.Publish, "publish", "", "comma-separated patterns the client may publish to (claim publish); empty: none")
	fs.DurationVar(&c.TTL, "ttl", time.Hour, "how long the token is valid, in whole seconds: exp = iat + ttl")
	fs.StringVar(&c.JWTSecret, "jwt-secret", "", "HS256 secret (32+ bytes), the gateway's --jwt-secret")
	fs.StringVar(&c.JWTSecretFile, "jwt-secret-file", "", "file holding the HS256 secret, the gateway's --jwt-secret-file")
	fs.StringVar(&c.JWTPrivateKey, "jwt-private-key", "", "PEM file with the RS256 (RSA, 2048+ bits) or ES256 (P-256) private key of the gateway's --jwt-public-key")
	fs.SetOutput(io.Discard)
	return fs
}

// runToken is `pushgate token`: it prints a client token signed with the
// key the gateway verifies, and returns the exit code.
func runToken(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	var c tokenConfig
	fs := newTokenFlagSet(&c)
	err := setFromEnv(fs, getenv, func(name string) bool { return tokenKeyFlags[name] })
	if err == nil {
		err = fs.Parse(args)
	}
	if errors.Is(err, flag.ErrHelp) {
		tokenUsage(stdout)
		return 0
	}
	if err == nil && fs.NArg() > 0 {
		err = fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var token string
	if err == nil {
		token, err = c.sign(time.Now())
	}
	if err != nil {
		fmt.Fprintf(stderr, "pushgate token: %v\nRun pushgate token --help to see the flags.\n", err)
		return 2
	}
	fmt.Fprintln(stdout, token)
	return 0
}

// sign checks the settings and returns the signed token, issued at now.
// The token is verified with the same rules as the gateway's before it
// is returned, so a key or a claim the gateway would refuse fails here.
func (c tokenConfig) sign(now time.Time) (string, error) {
	if c.User != "" && !protocol.ValidUser(c.User) {
		return "", fmt.Errorf("invalid --user %q: %v", c.User, protocol.ErrUserName)
	}
	channels, err := protocol.ParsePatterns(c.Channels)
	if err != nil {
		return "", fmt.Errorf("invalid --channels %q: %v", c.Channels, err)
	}
	publish, err := protocol.ParsePatterns(c.Publish)
	if err != nil {
		return "", fmt.Errorf("invalid --publish %q: %v", c.Publish, err)
	}
	if c.User == "" && len(channels) == 0 {
		return "", errors.New("give --user, --channels or both: a token with neither grants nothing")
	}
	if c.TTL < time.Second || c.TTL%time.Second != 0 {
		return "", fmt.Errorf("invalid --ttl %v: want whole seconds, at least 1s", c.TTL)
	}
	method, key, v, err := c.key()
	if err != nil {
		return "", err
	}
	claims := jwt.MapClaims{"iat": now.Unix(), "exp": now.Unix() + int64(c.TTL/time.Second)}
	if c.User != "" {
		claims["sub"] = c.User
	}
	if len(channels) > 0 {
		claims["channels"] = []string(channels)
	}
	if len(publish) > 0 {
		claims["publish"] = []string(publish)
	}
	token, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		return "", fmt.Errorf("signing: %v", err)
	}
	if _, err := v.Verify(token); err != nil {
		return "", fmt.Errorf("the gateway would refuse this token: %v", err)
	}
	return token, nil
}

// key returns the signing method and key, and the verifier the gateway
// builds from the matching secret or public key.
func (c tokenConfig) key() (jwt.SigningMethod, any, *auth.Verifier, error) {
	if err := secretFromFile(&c.JWTSecret, c.JWTSecretFile, "jwt-secret"); err != nil {
		return nil, nil, nil, err
	}
	switch {
	case c.JWTSecret != "" && c.JWTPrivateKey != "":
		return nil, nil, nil, errors.New("--jwt-secret (or --jwt-secret-file) and --jwt-private-key are exclusive: give one")
	case c.JWTSecret != "":
		v, err := auth.NewVerifier(auth.Config{Secret: []byte(c.JWTSecret)})
		if err != nil {
			return nil, nil, nil, fmt.Errorf("--jwt-secret: %v", err)
		}
		return jwt.SigningMethodHS256, []byte(c.JWTSecret), v, nil
	case c.JWTPrivateKey != "":
		b, err := os.ReadFile(c.JWTPrivateKey)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("--jwt-private-key: %v", err)
		}
		method, key, v, err := privateKey(b)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("--jwt-private-key %s: %v", c.JWTPrivateKey, err)
		}
		return method, key, v, nil
	}
	return nil, nil, nil, errors.New("no key: give --jwt-secret, --jwt-secret-file or --jwt-private-key (or PUSHGATE_JWT_SECRET, PUSHGATE_JWT_SECRET_FILE, PUSHGATE_JWT_PRIVATE_KEY), the key the gateway verifies with")
}

// privateKey reads the first PEM block of b: "PRIVATE KEY" (PKCS #8),
// "RSA PRIVATE KEY" (PKCS #1) or "EC PRIVATE KEY" (SEC 1). The verifier
// is built from its public key, as the gateway's --jwt-public-key would
// be, which enforces the same key sizes and curve.
func privateKey(b []byte) (jwt.SigningMethod, crypto.Signer, *auth.Verifier, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, nil, nil, errors.New("not PEM")
	}
	var (
		key any
		err error
	)
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, nil, nil, fmt.Errorf("PEM block %q is not a private key (the gateway takes the public key, this command the private one)", block.Type)
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("PEM block %q: %v", block.Type, err)
	}
	var method jwt.SigningMethod
	switch key.(type) {
	case *rsa.PrivateKey:
		method = jwt.SigningMethodRS256
	case *ecdsa.PrivateKey:
		method = jwt.SigningMethodES256
	default:
		return nil, nil, nil, fmt.Errorf("unsupported private key type %T, want RSA or P-256 EC", key)
	}
	signer := key.(crypto.Signer)
	der, err := x509.MarshalPKIXPublicKey(signer.Public())
	if err != nil {
		return nil, nil, nil, err
	}
	v, err := auth.NewVerifier(auth.Config{PublicKeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})})
	if err != nil {
		return nil, nil, nil, err
	}
	return method, signer, v, nil
}

// tokenUsage prints the token command's flags.
func tokenUsage(w io.Writer) {
	fmt.Fprintf(w, "Usage: pushgate token [flags]\n\nPrints a client token (a JWT for /ws?token=) signed with the gateway's key:\n"+
		"HS256 with --jwt-secret or --jwt-secret-file, RS256 or ES256 with --jwt-private-key.\n"+
		"The key flags read the gateway's environment twins.\n\n"+
		"  pushgate token --user alice --channels 'chat:*' --ttl 1h\n\nFlags:\n")
	printFlags(w, newTokenFlagSet(&tokenConfig{}), func(name string) bool { return tokenKeyFlags[name] })
}
