package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// readSecretFiles fills APIKey, JWTSecret and the webhook's secret from
// --api-key-file, --jwt-secret-file and --webhook-secret-file, so that secrets need not be on the command line,
// where /proc/<pid>/cmdline and ps show them to every local user.
func (c *config) readSecretFiles() error {
	if c.JWTSecretFile != "" && c.JWTPublicKey != "" {
		return errors.New("--jwt-secret-file and --jwt-public-key are exclusive: give one")
	}
	if err := secretFromFile(&c.APIKey, c.APIKeyFile, "api-key"); err != nil {
		return err
	}
	if err := secretFromFile(&c.Webhook.Secret, c.Webhook.SecretFile, "webhook-secret"); err != nil {
		return err
	}
	return secretFromFile(&c.JWTSecret, c.JWTSecretFile, "jwt-secret")
}

// secretFromFile sets *inline, the value of --<name>, from the file path
// names (--<name>-file), when it is set. The two are exclusive, whether
// given as flags or as their environment twins. The file's trailing line
// break is not part of the secret (echo and editors add one); an empty
// secret is an error, never "no secret".
func secretFromFile(inline *string, path, name string) error {
	if path == "" {
		return nil
	}
	if *inline != "" {
		return fmt.Errorf("--%s and --%s-file are exclusive (%s, %s): give one", name, name, envName(name), envName(name+"-file"))
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--%s-file: cannot read the secret: %v", name, err)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return fmt.Errorf("--%s-file %s: the file is empty", name, path)
	}
	*inline = s
	return nil
}
