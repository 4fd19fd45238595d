package auth_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pushgate/pushgate/auth"
)

func ExampleVerifier_Verify() {
	secret := []byte("an HS256 secret of at least 32 bytes")
	v, err := auth.NewVerifier(auth.Config{Secret: secret, Leeway: 30 * time.Second})
	if err != nil {
		panic(err)
	}

	// What an issuer, such as the application's login service, hands out.
	exp := time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)
	token, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub":      "alice",
		"channels": []string{"news", "chat:*"},
		"publish":  []string{"chat:*"},
		"exp":      exp.Unix(),
	}).SignedString(secret)

	c, err := v.Verify(token)
	if err != nil {
		panic(err)
	}
	fmt.Println("user:", c.User)
	fmt.Println("subscribe:", c.Channels)
	fmt.Println("publish:", c.Publish)
	fmt.Println("expires:", c.ExpiresAt.UTC())

	expired, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "alice",
		"exp": time.Now().Add(-time.Hour).Unix(),
	}).SignedString(secret)
	_, err = v.Verify(expired)
	fmt.Println(errors.Is(err, auth.ErrExpired))
	// Output:
	// user: alice
	// subscribe: [news chat:*]
	// publish: [chat:*]
	// expires: 2100-01-01 00:00:00 +0000 UTC
	// true
}
