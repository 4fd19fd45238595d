// Type-checked by TestPackage: a page's script using the global that
// <script src="/pushgate.js"> defines.
/// <reference types="pushgate-client" />

const page = new Pushgate();
page.on("state", (s: Pushgate.State) => void s);
page.connect();
