/* placeholder: replaced by the random checkpoint generator */
int main(void) { return 1; }
