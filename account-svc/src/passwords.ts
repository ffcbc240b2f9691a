/** Password and device-secret hashing: bcrypt (bcryptjs, pure JavaScript, no native build). */
import { compare, hash, hashSync } from 'bcryptjs';

export const hashPassword = (password: string, cost: number): Promise<string> => hash(password, cost);

/**
 * Checks a password against a stored hash. With no hash (unknown user, or an account without a
 * password) it still spends one comparison, so the answer time does not tell which it was.
 */
export class PasswordChecker {
  private readonly dummy: string;
  constructor(readonly cost: number) {
    this.dummy = hashSync('not-a-password-of-anybody', cost);
  }
  async check(password: string, stored: string | null | undefined): Promise<boolean> {
    const ok = await compare(password, stored ?? this.dummy);
    return ok && stored != null;
  }
}
