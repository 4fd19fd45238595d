// Command attacker plays one attack of package attack: the Spec that
// attack.Spawn puts in its environment, until its stdin closes. Tests
// build it without the race detector (proctest.Attacker), so that an
// attack is as strong whatever the test binary was built with.
package main

import (
	"fmt"
	"os"

	"github.com/pushgate/pushgate/internal/attack"
)

func main() {
	if !attack.RunChild() {
		fmt.Fprintln(os.Stderr, "attacker: started by attack.Spawn only")
		os.Exit(2)
	}
}
