// Command nats-creds makes a throwaway NATS operator, one account and, per ActorSystem, a user
// whose `.creds` file may publish and subscribe only as Troupe's bridge lets that system
// (docs/bridge.md, "Trust"). Tests use it to run nats-server in operator (JWT) mode; it is also a
// worked example of the permissions to give each system.
//
//	nats-creds -out DIR alpha beta
//
// writes DIR/server.conf (operator JWT and the account, to include in a nats-server
// configuration) and DIR/<system>.creds for each system.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/nats-io/jwt"
	"github.com/nats-io/nkeys"
)

func main() {
	out := flag.String("out", "", "directory to write server.conf and <system>.creds into")
	flag.Parse()
	if *out == "" || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: nats-creds -out DIR SYSTEM...")
		os.Exit(2)
	}
	if err := run(*out, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "nats-creds:", err)
		os.Exit(1)
	}
}

func run(out string, systems []string) error {
	operator, err := nkeys.CreateOperator()
	if err != nil {
		return err
	}
	operatorPublic, _ := operator.PublicKey()
	operatorClaims := jwt.NewOperatorClaims(operatorPublic)
	operatorClaims.Name = "troupe-test"
	operatorJWT, err := operatorClaims.Encode(operator)
	if err != nil {
		return err
	}

	account, err := nkeys.CreateAccount()
	if err != nil {
		return err
	}
	accountPublic, _ := account.PublicKey()
	accountClaims := jwt.NewAccountClaims(accountPublic)
	accountClaims.Name = "troupe"
	accountJWT, err := accountClaims.Encode(operator)
	if err != nil {
		return err
	}

	conf := fmt.Sprintf("operator: %q\nresolver: MEMORY\nresolver_preload: {\n  %s: %q\n}\n",
		operatorJWT, accountPublic, accountJWT)
	if err := os.WriteFile(filepath.Join(out, "server.conf"), []byte(conf), 0o600); err != nil {
		return err
	}

	for _, system := range systems {
		user, err := nkeys.CreateUser()
		if err != nil {
			return err
		}
		userPublic, _ := user.PublicKey()
		claims := jwt.NewUserClaims(userPublic)
		claims.Name = system
		claims.IssuerAccount = ""
		// What a sidecar of `system` needs, under its own name only.
		claims.Pub.Allow.Add("troupe.v1.*.invoke."+system, "troupe.v1.broadcast."+system+".*", "_INBOX.>")
		claims.Sub.Allow.Add("troupe.v1."+system+".invoke.*", "troupe.v1.broadcast.*.*", "_INBOX.>")
		userJWT, err := claims.Encode(account)
		if err != nil {
			return err
		}
		seed, err := user.Seed()
		if err != nil {
			return err
		}
		creds, err := jwt.FormatUserConfig(userJWT, seed)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(out, system+".creds"), creds, 0o600); err != nil {
			return err
		}
	}
	return nil
}
