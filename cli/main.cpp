// placeholder main: the eval helper replaces this with the real command.
int main() { return 0; }
