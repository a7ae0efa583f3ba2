// ouro: the command line. (Subcommands are being wired in.)
#include <cstdio>
int main() { std::puts("ouro"); return 0; }
