// The floor of the local stack: the smallest Worker wrangler can serve. The benchmark runs it on
// the same wrangler as the real Worker and reports every check path as a ratio to it, so the
// figures say what the Worker itself costs rather than how fast this machine is.
export default {
  fetch() {
    return new Response("ok");
  },
};
