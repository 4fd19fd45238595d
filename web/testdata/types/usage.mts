// Type-checked by TestPackage: the package imported from an ES module,
// by default and by name.
import Pushgate, { Pushgate as Named } from "pushgate-client";

const a: Pushgate = new Pushgate("ws://localhost:8080/ws");
const b: Pushgate = new Named("ws://localhost:8080/ws", { outboxSize: 5 });
a.subscribe("news", (data, meta) => void [data, meta.offset], { history: true });
b.on("synced", (e) => void e.offset);

// @ts-expect-error: the module exports no such name
import { Nope } from "pushgate-client";
void Nope;
